"""Training data: the shard format both tracks share, and the mini track's preparation."""

from harness.data.mini import MiniData, MiniManifest, mini_data_ready, prepare_mini
from harness.data.shards import ShardHeader, read_header, read_tokens, write_shard

__all__ = [
    "MiniData",
    "MiniManifest",
    "ShardHeader",
    "mini_data_ready",
    "prepare_mini",
    "read_header",
    "read_tokens",
    "write_shard",
]
