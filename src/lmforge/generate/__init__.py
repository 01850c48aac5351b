"""One inference engine (KV cache, batching, sampling, streaming) for eval, serving and RL."""

from lmforge.generate.batch import Completion, StreamEvent, generate, stream
from lmforge.generate.engine import Engine, Event
from lmforge.generate.kv_cache import KVCache
from lmforge.generate.sampling import SamplingParams, filter_logits, sample_next

__all__ = ["Completion", "Engine", "Event", "KVCache", "SamplingParams", "StreamEvent", "filter_logits", "generate",
           "sample_next", "stream"]
