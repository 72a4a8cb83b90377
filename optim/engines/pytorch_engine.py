"""PyTorch eager and torch.compile engines (FP32, BF16 autocast, dynamic INT8, INC static INT8, FP16 on CUDA)."""

from __future__ import annotations

import time

import numpy as np
import torch

from optim.engines.base import BuildContext, BuildInfo, Engine
from optim.spec import QuantizeStep


def quantize_dynamic_int8(model: torch.nn.Module, keep_float: list[str]) -> torch.nn.Module:
    """PyTorch dynamic INT8 of every `nn.Linear` outside the `keep_float` DETR blocks."""
    from optim.models.blocks import modules_in_blocks

    kept = modules_in_blocks(model, keep_float)
    targets = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear) and name not in kept}
    return torch.ao.quantization.quantize_dynamic(model, qconfig_spec=targets, dtype=torch.qint8)


class PyTorchEngine(Engine):
    """Eager PyTorch; `torch_compile` subclasses it and compiles the module."""

    kind = "pytorch"

    def build(self, model, quantize: QuantizeStep | None, context: BuildContext) -> BuildInfo:
        start = time.perf_counter()
        self.device = torch.device(self.spec.device)
        self.dtype = None
        self.freezing = False
        notes = []
        method = quantize.method if quantize else None
        if method == "torch_dynamic":
            model = quantize_dynamic_int8(model, quantize.keep_float)
            notes.append("dynamic INT8 Linear layers (weights INT8, activations quantized per batch)")
        elif method == "inc":
            model, inc_notes = self._quantize_inc(model, quantize, context)
            notes += inc_notes
        elif method in ("fp16", "bf16"):
            self.dtype = torch.float16 if method == "fp16" else torch.bfloat16
            notes.append(f"{method} autocast; {', '.join(quantize.keep_float) or 'no blocks'} kept in float32")
        self.model = self._wrap(model.to(self.device).eval())
        self.keep_float = quantize.keep_float if quantize else []
        self.graphs = {} if self.spec.cuda_graphs else None
        if self.spec.cuda_graphs:
            notes.append("CUDA graphs: one captured per input shape on its first inference, then replayed")
        return BuildInfo(build_seconds=time.perf_counter() - start, notes=notes)

    def _quantize_inc(self, model, quantize: QuantizeStep, context: BuildContext):
        """Neural Compressor accuracy-aware static INT8 (CPU only: X86InductorQuantizer)."""
        from optim.errors import OptimError
        from optim.quantize.calibration import calibration_batches, require_batches
        from optim.quantize.inc_quant import quantize_inc_torch

        if self.device.type != "cpu":
            raise OptimError("quantize method 'inc' produces x86 CPU INT8 kernels only", field="engine.device",
                             fix="use device: cpu")
        batches = calibration_batches(context.calibration, context.input_size)
        require_batches(batches, "inc")
        self.freezing = True  # Inductor lowers the Q/DQ graph to oneDNN INT8 kernels only when freezing weights
        return quantize_inc_torch(model, quantize, batches, context.evaluate_torch, batches[0])

    def _wrap(self, model: torch.nn.Module):
        return model

    @torch.no_grad()
    def infer(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inputs = torch.from_numpy(pixel_values).to(self.device)
        logits, boxes = self._forward(inputs) if self.graphs is None else self._replay(inputs)
        return logits.float().cpu().numpy(), boxes.float().cpu().numpy()

    def _forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dtype is None:
            outputs = self.model(pixel_values=inputs)
        else:
            with torch.autocast(self.device.type, dtype=self.dtype):
                outputs = self.model(pixel_values=inputs)
        return outputs.logits, outputs.pred_boxes

    def _replay(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run through the CUDA graph of this input shape, capturing it first if needed.

        Capture works for Hugging Face DETR because transformers skips its data-dependent mask check
        (`padding_mask.all()`, a host sync) while a CUDA stream is capturing."""
        shape = tuple(inputs.shape)
        if shape not in self.graphs:
            static_input = inputs.clone()
            side = torch.cuda.Stream()  # warm-up off the default stream, as torch.cuda.graphs requires
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self._forward(static_input)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_output = self._forward(static_input)
            self.graphs[shape] = (graph, static_input, static_output)
        graph, static_input, static_output = self.graphs[shape]
        static_input.copy_(inputs)
        graph.replay()
        return static_output

    def close(self) -> None:
        self.model = None
        self.graphs = None


class TorchCompileEngine(PyTorchEngine):
    """`torch.compile` (Inductor); the first inference pays the compilation, reported as first-inference time."""

    kind = "torch_compile"

    def _wrap(self, model: torch.nn.Module):
        if self.freezing:  # a global Inductor flag, read at every (re)compilation: restored in close()
            import torch._inductor.config as inductor_config

            self._freezing_before = inductor_config.freezing
            inductor_config.freezing = True
        return torch.compile(model, mode=self.spec.compile_mode, dynamic=False)

    def close(self) -> None:
        super().close()
        # Only a compile that switched the flag on restores it (a build can fail before compiling).
        previous = getattr(self, "_freezing_before", None)
        if previous is not None:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = previous
            self._freezing_before = None
        self.freezing = False
