"""Write one entry point for a runtime, and open one for calling: ONNX (onnxruntime), ExecuTorch (XNNPACK,
its Python runtime) and Core ML (conversion only: prediction needs macOS). Imports are lazy: the ``export``
extra holds these packages."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from s2dit.errors import S2DitError

RUNTIMES = ("onnx", "executorch", "coreml")
SUFFIX = {"onnx": ".onnx", "executorch": ".pte", "coreml": ".mlpackage"}


def _need(module: str, runtime: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise S2DitError(
            f"the {runtime} export needs {module.split('.')[0]}: pip install torch==2.13.0 -e '.[export]'"
        ) from None


def write_entry(
    runtime: str,
    module: torch.nn.Module,
    inputs: tuple,
    in_names: list[str],
    out_names: list[str],
    path: Path,
    delegate: bool = True,
) -> None:
    """Export ``module`` at the example ``inputs`` (static shapes) to ``path``. ``delegate`` (ExecuTorch):
    lower to XNNPACK; otherwise the portable kernels run it (exact float32, slower)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if runtime == "onnx":
            _need("onnxscript", runtime)
            torch.onnx.export(
                module,
                inputs,
                str(path),
                dynamo=True,
                input_names=in_names,
                output_names=out_names,
                external_data=False,
                verbose=False,
            )
            return
        program = torch.export.export(module, inputs)
        if runtime == "executorch":
            _need("executorch", runtime)
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower

            partitioner = [XnnpackPartitioner()] if delegate else []
            lowered = to_edge_transform_and_lower(program, partitioner=partitioner).to_executorch()
            path.write_bytes(lowered.buffer)
            return
        ct = _need("coremltools", runtime)
        mlmodel = ct.convert(
            program.run_decompositions({}),
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS18,
            compute_precision=ct.precision.FLOAT16,
        )
        mlmodel.save(str(path))


def open_entry(runtime: str, path: Path):
    """A callable ``list[Tensor] -> list[Tensor]`` running the artefact at ``path``."""
    if runtime == "onnx":
        ort = _need("onnxruntime", runtime)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def run(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
            feeds = {n: t.detach().contiguous().numpy() for n, t in zip(names, inputs, strict=True)}
            return [torch.from_numpy(o) for o in session.run(None, feeds)]

        return run
    if runtime == "executorch":
        _need("executorch", runtime)
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(str(path)).load_method("forward")

        def run(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
            return [o.clone() for o in method.execute([t.detach().contiguous() for t in inputs])]

        return run
    raise S2DitError(
        f"{path}: {runtime} artefacts run on their device (Core ML packages on macOS/iOS); "
        "check numerics with an onnx or executorch export of the same checkpoint"
    )
