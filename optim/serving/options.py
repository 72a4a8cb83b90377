"""How a variant is served: batching, instances, threads (shared by the repository writer and the server)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from optim.errors import OptimError


@dataclass(frozen=True)
class ServingOptions:
    """Triton scheduling for one model. `dynamic_batching=False` serves each request as it comes."""

    max_batch_size: int = 8
    preferred_batch_sizes: tuple[int, ...] = (4, 8)
    # How long the batcher may hold a request to fill a preferred batch: it is added latency for a lone request
    # (measured: 2 ms of queue at concurrency 1 with 2000), and batches still form from what queued meanwhile.
    max_queue_delay_us: int = 100
    instances: int = 1  # model instances (KIND_CPU), each with its own engine session
    threads: int = 0  # intra-op threads per instance; 0 = the engine's default (every core), as optim.run times
    dynamic_batching: bool = True

    def __post_init__(self):
        checks = [(self.max_batch_size >= 1, "--max-batch-size", "give 1 or more"),
                  (self.instances >= 1, "--instances", "give 1 or more"),
                  (self.threads >= 0, "--threads", "give 0 (every core) or more"),
                  (self.max_queue_delay_us >= 0, "--queue-delay-us", "give 0 or more"),
                  (all(1 <= size <= self.max_batch_size for size in self.preferred_batch_sizes),
                   "--preferred-batch-sizes", f"give sizes between 1 and --max-batch-size ({self.max_batch_size})")]
        for ok, field, fix in checks:
            if not ok:
                raise OptimError(f"invalid serving option {field}", field=field, fix=fix)

    def as_dict(self) -> dict:
        return {**asdict(self), "preferred_batch_sizes": list(self.preferred_batch_sizes)}

    @classmethod
    def from_dict(cls, data: dict) -> ServingOptions:
        return cls(**{**data, "preferred_batch_sizes": tuple(data.get("preferred_batch_sizes", ()))})
