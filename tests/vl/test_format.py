"""InternVL chat JSONL: the demo set round-trips through files, and each kind of bad record is
counted and skipped with file:line and the field (or raised in strict mode)."""

import base64
import io
import json

import pytest
from PIL import Image

from lmforge.align.conversations import ChatDataError, Skipped
from lmforge.vl.format import read_vl_dataset, write_vl_dataset
from lmforge.vl.synth import generate, image_digest


def png(colour=(10, 200, 30), size=(8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def conv(question="<image>\nWhat colour?", answer="green"):
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


def test_round_trip_of_the_demo_set(tmp_path):
    examples = generate(12, seed=2)
    path = write_vl_dataset(examples, tmp_path / "demo", tasks=("qa", "caption"))
    assert path == tmp_path / "demo" / "data.jsonl" and len(list((tmp_path / "demo" / "images").glob("*.png"))) == 12
    assert not list((tmp_path / "demo").rglob(".*.tmp"))
    skipped = Skipped()
    records = list(read_vl_dataset(tmp_path / "demo", skipped=skipped))
    assert skipped.total == 0 and len(records) == 24
    for i, example in enumerate(examples):
        qa, caption = records[2 * i], records[2 * i + 1]
        assert image_digest(qa.images[0]) == image_digest(example.image)  # PNG is lossless
        assert qa.conversations == conv(f"<image>\n{example.question}", example.answer)
        assert caption.conversations[1]["value"] == example.caption
        assert qa.meta == {"kind": example.kind, "lang": example.lang, "task": "qa"}
    assert records[0].messages()[0]["role"] == "user"


def test_embedded_images_round_trip(tmp_path):
    examples = generate(3, seed=4)
    path = write_vl_dataset(examples, tmp_path, embed_images=True)
    assert not (tmp_path / "images").exists() and "image_base64" in path.read_text()
    records = list(read_vl_dataset(path, strict=True))
    assert [image_digest(r.images[0]) for r in records] == [image_digest(e.image) for e in examples]


def test_one_image_without_placeholder_goes_before_the_first_human_turn(tmp_path):
    (tmp_path / "a.png").write_bytes(png())
    turns = [{"from": "system", "value": "be brief"}, *conv("What colour?")]
    (record,) = read_vl_dataset(write_jsonl(tmp_path / "d.jsonl", [{"id": "x", "image": "a.png",
                                                                     "conversations": turns}]))
    assert record.id == "x" and record.conversations[1]["value"] == "<image>\nWhat colour?"
    assert record.conversations[0]["value"] == "be brief"


def test_several_images_text_only_and_data_urls(tmp_path):
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "b.png").write_bytes(png((200, 0, 0)))
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    rows = [{"image": ["a.png", "b.png"], "conversations": conv("<image>\n<image>\nSame colour?", "no")},
            {"conversations": conv("Hello", "hi")},
            {"image_base64": [url], "conversations": conv()}]
    records = list(read_vl_dataset(write_jsonl(tmp_path / "d.jsonl", rows), strict=True))
    assert [len(r.images) for r in records] == [2, 0, 1]
    assert records[0].images[1].getpixel((0, 0)) == (200, 0, 0)


BAD = [
    ("{not json", "not JSON"),
    ({"image": "a.png", "conversations": []}, "empty conversations"),
    ({"image": "a.png"}, "empty conversations"),
    ({"image": "missing.png", "conversations": conv()}, "missing image"),
    ({"image": "corrupt.png", "conversations": conv()}, "bad image"),
    ({"image": "a.png", "conversations": conv("<image>\n<image>\nTwo?")}, "too many <image> placeholders"),
    ({"conversations": conv()}, "too many <image> placeholders"),
    ({"image": ["a.png", "a.png"], "conversations": conv("Two?")}, "too few <image> placeholders"),
    ({"image": ["a.png", "a.png"], "conversations": conv("<image> and?")}, "too few <image> placeholders"),
    ({"image": 7, "conversations": conv()}, "bad image field"),
    ({"image": "a.png", "image_base64": "AAAA", "conversations": conv()}, "bad image field"),
    ({"image_base64": "!!notbase64", "conversations": conv()}, "bad image"),
    ({"image": "a.png", "conversations": [{"from": "human", "value": "<image>\nhi"}]}, "no assistant turn"),
    ({"image": "a.png", "conversations": [{"from": "robot", "value": "<image>"}, {"from": "gpt", "value": "x"}]},
     "unknown role"),
    ({"image": "big.png", "conversations": conv()}, "bad image"),
]


@pytest.mark.parametrize("bad, reason", BAD)
def test_each_bad_record_is_counted_with_file_line_and_field(tmp_path, bad, reason):
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "corrupt.png").write_bytes(png()[:30])
    (tmp_path / "big.png").write_bytes(png(size=(200, 200)))
    path = write_jsonl(tmp_path / "d.jsonl", [{"image": "a.png", "conversations": conv()}, bad])
    skipped = Skipped()
    records = list(read_vl_dataset(path, skipped=skipped, max_pixels=10_000))
    assert len(records) == 1
    assert skipped.counts == {reason: 1}
    assert skipped.places[0].startswith(f"{path}:2: {reason}")
    with pytest.raises(ChatDataError, match=f"d.jsonl:2: {reason}"):
        list(read_vl_dataset(path, strict=True, max_pixels=10_000))


def test_messages_name_the_field_and_the_image(tmp_path):
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG garbage")
    path = write_jsonl(tmp_path / "d.jsonl", [{"image": "corrupt.png", "conversations": conv()},
                                              {"image": "nope.png", "conversations": conv()},
                                              {"image": "corrupt.png", "conversations": conv("<image><image>")}])
    skipped = Skipped()
    with pytest.raises(ChatDataError, match="all 3 records are bad"):
        list(read_vl_dataset(path, skipped=skipped))
    assert "'image' corrupt.png: cannot decode" in skipped.places[0]
    assert "'image' nope.png: no such file" in skipped.places[1]
    assert "2 in 'conversations' for 1 image" in skipped.places[2]


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ChatDataError, match="no such file"):
        list(read_vl_dataset(tmp_path / "absent.jsonl"))
