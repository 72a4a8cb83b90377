"""The experiment spec: typed, strict, validated without importing any heavy library.

A spec names a model, a data set, latency settings and variants; a variant is an ordered chain of
steps (`prune`, `distill`, then at most one `quantize`, last) plus an engine. `matrix:` expands
engines x precisions into variants. Environment checks (is the engine installed, is there a GPU)
happen later, just before a variant runs (`optim.engines.registry.check_available`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from optim.spec_types import (
    BatchSize,
    ImageSize,
    ModelRef,
    OutputDir,
    Seed,
    SpecPath,
    SplitName,
    Steps,
    StrictModel,
    Threads,
)

EngineKind = Literal["pytorch", "torch_compile", "onnxruntime", "openvino", "tensorrt", "torch_tensorrt"]
Precision = Literal["fp32", "fp16", "bf16", "int8"]
Block = Literal["backbone", "encoder", "decoder", "heads"]
# keep_float names: a block, or one of its units (optim.models.blocks; which exist depends on the model).
KEEP_FLOAT_NAME = (r"(?:backbone|encoder|decoder|heads|backbone\.(?:stem|projection|stage[1-9][0-9]*)"
                   r"|(?:encoder|decoder)\.layer(?:0|[1-9][0-9]*)|heads\.(?:class|box))")
WHOLE_BLOCK_METHODS = {"inc", "modelopt_int8", "modelopt_fp8"}  # keep whole blocks only


def _keep_float_name(value: str) -> str:
    if not re.fullmatch(KEEP_FLOAT_NAME, value):
        raise ValueError(f"'{value}' is not a DETR block or unit; use a block (backbone, encoder, decoder, heads) or "
                         "a unit: backbone.stem, backbone.stage1.., backbone.projection, encoder.layer0.., "
                         "decoder.layer0.., heads.class, heads.box (see docs/budget.md)")
    return value


KeepFloatName = Annotated[str, AfterValidator(_keep_float_name),
                          WithJsonSchema({"type": "string", "pattern": f"^{KEEP_FLOAT_NAME}$"})]

GPU_ENGINES = {"tensorrt", "torch_tensorrt"}
MAX_BATCH_BYTES = 8 << 30  # one float32 input batch; beyond it a run would swap or be killed before it measures
SYNTHETIC_SPLITS = ("train", "val", "test")  # optim.data.synthetic's splits (kept here: specs import no generator)
# Which quantize methods each engine can run; validated at load time.
METHODS_BY_ENGINE: dict[str, set[str]] = {
    "pytorch": {"torch_dynamic", "inc", "fp16", "bf16"},
    "torch_compile": {"torch_dynamic", "inc", "fp16", "bf16"},
    "onnxruntime": {"ort_static", "ort_dynamic", "fp16"},
    "openvino": {"nncf", "fp16", "bf16"},
    "tensorrt": {"fp16", "int8", "modelopt_int8", "modelopt_fp8"},
    "torch_tensorrt": {"fp16", "int8"},
}
# The quantize method a `matrix:` precision means on each engine.
DEFAULT_METHOD = {
    ("pytorch", "int8"): "torch_dynamic", ("torch_compile", "int8"): "torch_dynamic",
    ("onnxruntime", "int8"): "ort_static", ("openvino", "int8"): "nncf",
    ("tensorrt", "int8"): "int8", ("torch_tensorrt", "int8"): "int8",
}


class DataSpec(StrictModel):
    """The evaluation and calibration data: the built-in synthetic set or any COCO folder."""

    dataset: Literal["synthetic", "coco"] = "synthetic"
    root: SpecPath = Path("data/synthetic")
    eval_split: SplitName = "test"
    eval_images: int | None = Field(200, ge=1, le=10_000_000, description="first N images of eval_split; null = all")
    calibration_split: SplitName = "val"
    calibration_images: int = Field(64, ge=1, le=10000)

    @model_validator(mode="after")
    def _calibration_apart(self) -> DataSpec:
        if self.calibration_split == self.eval_split:
            raise ValueError("calibration_split must differ from eval_split (calibration images must never be "
                             "evaluation images); e.g. calibrate on 'val' and evaluate on 'test'")
        if self.dataset == "synthetic":
            for field in ("eval_split", "calibration_split"):
                if getattr(self, field) not in SYNTHETIC_SPLITS:
                    raise ValueError(f"{field} '{getattr(self, field)}' is not a split of the synthetic data set; "
                                     f"choose one of {list(SYNTHETIC_SPLITS)} (or set dataset: coco)")
        return self


class LatencySpec(StrictModel):
    """How latency is measured: warm-up, then timed iterations bounded by count and time."""

    enabled: bool = Field(True, description="time every variant; false = an accuracy-only run (no latency, no "
                                            "profile: mAP, fidelity and size only)")
    # Bounds keep a run finite: warm-up and min_iters are run whatever the time, so they stay small.
    warmup_iters: int = Field(10, ge=0, le=1000)
    min_iters: int = Field(30, ge=1, le=1000)
    max_iters: int = Field(300, ge=1, le=100_000)
    max_seconds: float = Field(8.0, gt=0, le=300, description="timed seconds per batch size, at most")
    steady_wait: float = Field(2.0, ge=0, le=5, description="extra time, in multiples of max_seconds, spent waiting for "
                                                      "the machine's steady (fast) state when it is slow")
    threads: Threads | None = Field(None, description="intra-op threads for every engine (default: all cores)")
    isolate: bool = Field(True, description="time engines that run from a file (ONNX Runtime, OpenVINO) in a clean "
                                            "worker process that loads only that engine")
    reference: bool = Field(True, description="cross-check the first batch size against the engine's own benchmark "
                                              "tool (benchmark_app, onnxruntime_test, torch.utils.benchmark)")
    reference_rounds: int = Field(1, ge=1, le=7, description="lab and reference tool alternate this many times; "
                                                            "the report shows the median ratio")
    reference_seconds: float = Field(3.0, gt=0, le=600, description="how long each reference-tool run times")

    @model_validator(mode="after")
    def _bounds(self) -> LatencySpec:
        if self.min_iters > self.max_iters:
            raise ValueError("min_iters must be <= max_iters")
        return self


class ProfileSpec(StrictModel):
    """Profilers to run after the timed measurement (never during it)."""

    torch_profiler: bool = False
    pyinstrument: bool = False
    nvtx: bool = False
    stages: bool = Field(False, description="per-stage latency breakdown (backbone/encoder/decoder/...); off by "
                                           "default: it re-times every variant stage by stage")


Scenario = Literal["singlestream", "multistream", "server", "offline"]
GridValues = Annotated[list[Annotated[int, Field(ge=1, le=64)]], Field(min_length=1, max_length=6)]


class ScenariosSpec(StrictModel):
    """MLPerf scenarios (LoadGen) each variant is measured in, with the multi-stream video pipeline; needs the
    `parallel` extra. Parallel settings are tuned first over threads x streams x batch x inflight."""

    run: list[Scenario] = Field(min_length=1, description="scenarios to measure, in order")
    seconds: float = Field(2.0, gt=0, le=600, description="length of each timed run (MLPerf's rules want 600 s: "
                                                           "shorter runs report LoadGen's VALID flag as advisory)")
    fps: float = Field(30.0, gt=0, le=240, description="multistream: frame rate of every camera")
    deadline_ms: float | None = Field(None, gt=0, le=10000, description="multistream: a frame is on time within "
                                                                         "this of its arrival (default: one frame "
                                                                         "interval)")
    max_streams: int = Field(8, ge=1, le=64, description="multistream: most cameras tried")
    server_bound_ms: float = Field(50.0, gt=0, le=10000, description="server: the p99 latency bound")
    server_max_rate: float = Field(800.0, gt=0, le=100000, description="server: highest Poisson rate tried "
                                                                        "(queries/s)")
    threads: GridValues = Field(default_factory=lambda: [2], description="tuning: inference threads in all")
    streams: GridValues = Field(default_factory=lambda: [1, 2], description="tuning: OpenVINO streams / ONNX "
                                                                             "Runtime sessions")
    batch: GridValues = Field(default_factory=lambda: [1, 4], description="tuning: frames per inference (across "
                                                                           "streams)")
    inflight: GridValues = Field(default_factory=lambda: [1, 2, 4], description="tuning: requests in flight")
    faults: bool = Field(True, description="multistream: also run a stream that sends a corrupt frame, stalls and "
                                           "ends early, and report what was counted")


class QuantizeStep(StrictModel):
    """Post-training quantization or a float cast, applied by the engine's own tools."""

    kind: Literal["quantize"]
    method: Literal["ort_static", "ort_dynamic", "nncf", "inc", "torch_dynamic", "fp16", "bf16", "int8",
                    "modelopt_int8", "modelopt_fp8"]
    per_channel: bool = True
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    keep_float: list[KeepFloatName] = Field(default_factory=list, description="DETR blocks (backbone, encoder, "
                                            "decoder, heads) or units (encoder.layer0, backbone.stage2, heads.box, "
                                            "...) left in float")
    ignored_scope: list[str] = Field(default_factory=list, description="NNCF: node-name patterns (regex) to skip")
    accuracy_tolerance: float = Field(0.01, ge=0, le=1, description="INC: allowed relative mAP drop")
    max_trials: int = Field(10, ge=1, le=200, description="INC: tuning trials")

    @model_validator(mode="after")
    def _whole_blocks(self) -> QuantizeStep:
        units = [name for name in self.keep_float if "." in name]
        if units and self.method in WHOLE_BLOCK_METHODS:
            raise ValueError(f"keep_float: {self.method} keeps whole blocks in float, not units ({', '.join(units)}); "
                             "use backbone, encoder, decoder or heads")
        return self


class PruneStep(StrictModel):
    """Structured or unstructured pruning of the PyTorch model."""

    kind: Literal["prune"]
    method: Literal["channels", "decoder_layers", "encoder_layers", "queries", "heads", "unstructured", "semi_structured_2_4"]
    ratio: float = Field(0.3, gt=0, lt=1, description="channels/heads/unstructured: fraction removed")
    keep: int | None = Field(None, ge=1, le=10_000, description="layers/queries: how many to keep")
    importance: Literal["magnitude", "taylor"] = "magnitude"
    finetune_steps: int = Field(0, ge=0, le=10_000_000, description="short fine-tuning after pruning, without a teacher")


class DistillStep(StrictModel):
    """Train the current model (student) to match a teacher's matched logits and boxes."""

    kind: Literal["distill"]
    teacher: ModelRef = Field("baseline", description="'baseline' or any zoo name / folder / hub id")
    steps: Steps = 500
    lr: float = Field(1e-4, gt=0, le=1)
    schedule: Literal["constant", "cosine"] = Field("constant", description="learning rate over the steps; "
                                                    "cosine decays to 10 % of lr at the last step")
    batch_size: BatchSize = 16
    feature_weight: float = Field(0.0, ge=0, le=1000, description="weight of the encoder-feature MSE term")


Step = Annotated[QuantizeStep | PruneStep | DistillStep, Field(discriminator="kind")]


class EngineSpec(StrictModel):
    """An inference engine and its options."""

    kind: EngineKind = "pytorch"
    device: Literal["cpu", "cuda"] = "cpu"
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    providers: list[Literal["cpu", "cuda", "tensorrt"]] = Field(default_factory=lambda: ["cpu"])
    opset: int = Field(17, ge=13, le=21)
    cuda_graphs: bool = Field(False, description="pytorch on cuda: capture one CUDA graph per input shape, replay it")
    openvino_source: Literal["pytorch", "onnx"] = Field("pytorch", description="openvino: convert straight from "
                                                        "PyTorch (OpenVINO's documented path) or through the ONNX "
                                                        "export")

    @model_validator(mode="after")
    def _device(self) -> EngineSpec:
        if self.kind in GPU_ENGINES and self.device != "cuda":
            raise ValueError(f"engine '{self.kind}' runs only on a GPU: set device: cuda")
        if self.cuda_graphs and (self.kind != "pytorch" or self.device != "cuda"):
            raise ValueError("cuda_graphs needs kind: pytorch and device: cuda (for torch_compile use "
                             "compile_mode: reduce-overhead, which captures CUDA graphs itself)")
        return self


class VariantSpec(StrictModel):
    """One thing to measure: a chain of steps plus an engine."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)
    steps: list[Step] = Field(default_factory=list)
    engine: EngineSpec = EngineSpec()
    profile: ProfileSpec | None = None

    @model_validator(mode="after")
    def _chain(self) -> VariantSpec:
        quantize = [i for i, step in enumerate(self.steps) if step.kind == "quantize"]
        if len(quantize) > 1:
            raise ValueError("at most one quantize step per variant")
        if quantize and quantize[0] != len(self.steps) - 1:
            raise ValueError("quantize must be the last step (prune/distill act on the float model first)")
        if quantize:
            method = self.steps[quantize[0]].method
            allowed = METHODS_BY_ENGINE[self.engine.kind]
            if method not in allowed:
                raise ValueError(f"quantize method '{method}' cannot run on engine '{self.engine.kind}'; "
                                 f"choose one of {sorted(allowed)} or another engine")
            if method == "fp16" and self.engine.device == "cpu" and self.engine.kind != "openvino":
                raise ValueError(f"fp16 on the CPU engine '{self.engine.kind}' is not supported: use "
                                 "device: cuda, or bf16 / int8 on CPU")
        return self

    @property
    def precision(self) -> str:
        """fp32, or what the quantize step makes of the model."""
        for step in self.steps:
            if step.kind == "quantize":
                return {"fp16": "fp16", "bf16": "bf16", "modelopt_fp8": "fp8"}.get(step.method, "int8")
        return "fp32"


class MatrixSpec(StrictModel):
    """engines x precisions, each cell a variant named `<engine>-<precision>`."""

    engines: list[EngineKind]
    precisions: list[Precision] = Field(default_factory=lambda: ["fp32"])
    device: Literal["cpu", "cuda"] = "cpu"

    def expand(self) -> list[VariantSpec]:
        """The variants of the matrix; cells an engine cannot run are skipped, not errors."""
        variants = []
        for engine in self.engines:
            for precision in self.precisions:
                steps = []
                if precision != "fp32":
                    method = DEFAULT_METHOD.get((engine, precision), precision)
                    if method not in METHODS_BY_ENGINE[engine]:
                        continue
                    if method == "fp16" and self.device == "cpu" and engine != "openvino":
                        continue
                    steps = [QuantizeStep(kind="quantize", method=method)]
                variants.append(VariantSpec(name=f"{engine}-{precision}", steps=steps,
                                            engine=EngineSpec(kind=engine, device=self.device)))
        return variants


class ServingSpec(StrictModel):
    """Serve chosen variants after measuring them (docs/serving.md): each is deployed as a Triton model repository,
    served with PyTriton on loopback, loaded at each level and its accuracy scored through the server."""

    variants: list[str] = Field(min_length=1, description="onnxruntime / openvino variants of this spec")
    protocol: Literal["http", "grpc"] = "grpc"
    concurrency: list[Annotated[int, Field(ge=1, le=256)]] = Field(default_factory=lambda: [1, 8])
    rates: list[Annotated[float, Field(gt=0, le=100_000)]] = Field(default_factory=list,
                                                                   description="open-loop levels, requests/s")
    duration: float = Field(5.0, gt=0, le=600, description="seconds per level")
    batching: list[bool] = Field(default_factory=lambda: [True, False], min_length=1,
                                 description="serve with dynamic batching, without, or both")
    instances: int = Field(1, ge=1, le=64)
    accuracy: bool = Field(True, description="score the evaluation split through the server")
    start_timeout: float = Field(180.0, gt=0, le=3600, description="seconds for a server to come up")


class SearchSpaceSpec(StrictModel):
    """The candidates a search may try: every combination of these (the grid)."""

    engines: list[EngineKind] = Field(default_factory=lambda: ["onnxruntime", "openvino"])
    precisions: list[Precision] = Field(default_factory=lambda: ["fp32", "int8"])
    keep_float: list[list[Block]] = Field(default_factory=lambda: [[]], description="sets of blocks left in float "
                                          "(quantized candidates only); [] = quantize every block")
    prune_ratios: list[Annotated[float, Field(ge=0, lt=1)]] = Field(default_factory=lambda: [0.0], description=""
                                                                    "channel-pruning ratios; 0 = no pruning")
    distill: list[bool] = Field(default_factory=lambda: [False], description="distill after pruning (on/off)")


class SearchSpec(StrictModel):
    """Find the fastest variant whose mAP loss stays within a budget (see docs/budget.md)."""

    budget_points: float = Field(1.0, gt=0, le=100, description="upper bound of the paired-bootstrap 95 % interval "
                                                                "of the mAP loss to the baseline, in points")
    objective: Literal["latency", "throughput", "size"] = Field("latency", description="latency: p50 at the "
                                                               "smallest batch size; throughput: at the largest; "
                                                               "size: bytes on disk")
    space: SearchSpaceSpec = SearchSpaceSpec()
    max_candidates: int | None = Field(None, ge=1, description="stop after measuring this many candidates")
    distill_steps: int = Field(200, ge=1, description="training steps of a distill candidate")
    sensitivity: SpecPath | None = Field(None, description="results.json of a `python -m optim.sensitivity` run: which "
                                                       "blocks to keep in float first")


class ExperimentSpec(StrictModel):
    """A whole experiment: `python -m optim.run SPEC.yaml`."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)
    description: str = ""
    model: ModelRef = "synth-detr"
    trust_remote_code: bool = False
    allow_missing_weights: bool = Field(False, description="load a checkpoint that lacks tensors the architecture "
                                        "needs (they get random values); off: such a checkpoint is an error")
    data: DataSpec = DataSpec()
    input_size: ImageSize | None = Field(None, description="(height, width); default: the model's own")
    batch_sizes: list[BatchSize] = Field(default_factory=lambda: [1], min_length=1, max_length=16)
    eval_batch_size: BatchSize = 8
    baseline: str | None = Field(None, description="variant name; default: the first variant")
    seed: Seed = 0
    latency: LatencySpec = LatencySpec()
    profile: ProfileSpec = ProfileSpec()
    variants: list[VariantSpec] = Field(default_factory=list)
    matrix: MatrixSpec | None = None
    serving: ServingSpec | None = None
    scenarios: ScenariosSpec | None = Field(None, description="MLPerf scenarios with the multi-stream pipeline "
                                                              "(see the parallel inference guide)")
    search: SearchSpec | None = Field(None, description="after the variants, search a space for the fastest "
                                                        "variant within an mAP budget")
    output_dir: OutputDir = Path("reports")

    @model_validator(mode="after")
    def _variants(self) -> ExperimentSpec:
        names = [v.name for v in self.all_variants()]
        if not names:
            raise ValueError("no variants: add 'variants:' or 'matrix:'")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"variant names must be unique; repeated: {duplicates}")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline '{self.baseline}' is not a variant; choose one of {names}")
        if self.input_size is not None:
            largest = max(*self.batch_sizes, self.eval_batch_size) * 3 * self.input_size[0] * self.input_size[1] * 4
            if largest > MAX_BATCH_BYTES:
                raise ValueError(f"a batch of {max(*self.batch_sizes, self.eval_batch_size)} images at "
                                 f"{self.input_size[0]}x{self.input_size[1]} is {largest / 2**30:.1f} GiB of input alone "
                                 f"(limit {MAX_BATCH_BYTES / 2**30:.0f} GiB); use smaller batch_sizes / eval_batch_size "
                                 "or input_size")
        if not self.latency.enabled:
            timed = [name for name in ("scenarios", "serving", "search") if getattr(self, name) is not None]
            if timed:
                raise ValueError(f"latency.enabled is false (accuracy only) but {timed} need latency figures; "
                                 "remove them or set latency.enabled: true")
        unknown = [n for n in (self.serving.variants if self.serving else []) if n not in names]
        if unknown:
            raise ValueError(f"serving.variants {unknown} are not variants; choose among {names}")
        return self

    def all_variants(self) -> list[VariantSpec]:
        """Explicit variants first, then the matrix cells."""
        return list(self.variants) + (self.matrix.expand() if self.matrix else [])

    @property
    def baseline_name(self) -> str:
        """The variant every other is compared with."""
        return self.baseline or self.all_variants()[0].name

    def profile_of(self, variant: VariantSpec) -> ProfileSpec:
        """A variant's own profile settings, else the experiment's."""
        return variant.profile or self.profile
