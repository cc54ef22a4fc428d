"""vLLM KV-cache events: wire types, codec (both encodings), index, publisher and subscriber.

Shared by the simulator (which publishes) and the EPP (which subscribes); imports nothing
else of infergate.
"""

from infergate.kvevents.codec import (
    ENCODINGS,
    DecodedBatch,
    Encoding,
    KvEventDecodeError,
    decode_batch,
    encode_batch,
    format_topic,
    parse_topic,
)
from infergate.kvevents.events import (
    AllBlocksCleared,
    BlockHash,
    BlockRemoved,
    BlockStored,
    EventBatch,
    KvEvent,
)
from infergate.kvevents.index import EndpointBlockIndex
from infergate.kvevents.publisher import KvEventPublisher
from infergate.kvevents.sequence import SequenceTracker, Verdict
from infergate.kvevents.subscriber import KvEventSubscriber

__all__ = [
    "ENCODINGS", "AllBlocksCleared", "BlockHash", "BlockRemoved", "BlockStored", "DecodedBatch", "Encoding",
    "EndpointBlockIndex", "EventBatch", "KvEvent", "KvEventDecodeError", "KvEventPublisher", "KvEventSubscriber",
    "SequenceTracker", "Verdict", "decode_batch", "encode_batch", "format_topic", "parse_topic",
]
