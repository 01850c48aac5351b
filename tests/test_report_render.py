"""The headless-Chromium render check of static HTML reports (lmforge.report.render).

Skipped where no Chromium is installed (`apt-get install chromium`, or set LMFORGE_CHROMIUM).
"""

import base64
import io

import pytest

from lmforge.report.render import CHECK_SCRIPT, check, find_chromium, main, png_size, render

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="no Chromium (apt-get install chromium, or set "
                                       "LMFORGE_CHROMIUM)")


def _png_data_uri() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=50)
    ax.plot([0, 1, 2], [3, 1, 2])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _page(body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>t</title></head><body>"
            f"{body}{CHECK_SCRIPT}</body></html>")


def test_render_good_page(tmp_path):
    html = tmp_path / "report.html"
    html.write_text(_page(f"<h1>Run</h1><h2>Training</h2><p>loss went down</p>"
                          f"<img alt='loss curve' src='{_png_data_uri()}'>"
                          f"<h2>Evaluation &amp; scores</h2><div style='height:1500px'></div>"
                          f"<p>end</p>"))
    shot = tmp_path / "shot.png"
    result = render(html, shot)

    assert check(result, ["Training", "evaluation"]) == []
    assert result["images"] == 1 and result["broken"] == []
    assert result["sections"] == ["Training", "Evaluation & scores"]
    assert result["console_errors"] == []
    assert result["chromium"] and result["screenshot"] == str(shot)
    # Full page: the 1500 px block and the headings all fit in one shot.
    assert shot.stat().st_size > 1000
    width, height = png_size(shot)
    assert (width, height) == (1280, result["height"])
    assert 1600 < height < 2500
    assert check(result, ["Serving"]) == [
        "missing section: 'Serving' (sections: ['Training', 'Evaluation & scores'])"]


def test_render_broken_image_and_js_error(tmp_path, capsys):
    html = tmp_path / "report.html"
    html.write_text(_page("<h2>Training</h2><img alt='loss curve' src='data:image/png;base64,AAAA'>"
                          "<script>undefinedFunction()</script>"))
    result = render(html, tmp_path / "shot.png", height=600)

    assert result["images"] == 1 and result["broken"] == ["loss curve"]
    assert any("undefinedFunction" in e for e in result["console_errors"])
    assert (result["width"], result["height"]) == (1280, 600)
    problems = check(result, ["Training"])
    assert "broken image: loss curve" in problems
    assert any(p.startswith("console error: Uncaught ReferenceError") for p in problems)

    # The command line: a run directory holding report.html; report.png lands beside it.
    assert main([str(tmp_path), "--require", "Training", "--height", "600"]) == 1
    out = capsys.readouterr().out
    assert "broken image: loss curve" in out
    assert png_size(tmp_path / "report.png") == (1280, 600)
