"""One small client over tritonclient's HTTP and gRPC APIs: named numpy inputs in, named numpy outputs out."""

from __future__ import annotations

import numpy as np

from optim.serving.triton import grpc_client, http_client

PROTOCOLS = ("http", "grpc")


class TritonClient:
    """A KServe-v2 client for `url` (host:port) over `protocol`; not shared between threads (HTTP is not
    thread-safe in tritonclient), so load generators make one per worker."""

    def __init__(self, url: str, protocol: str = "http", timeout_s: float = 60.0):
        self.protocol = protocol
        self.module = http_client() if protocol == "http" else grpc_client()
        if protocol == "http":
            self.client = self.module.InferenceServerClient(url, connection_timeout=timeout_s,
                                                            network_timeout=timeout_s)
        else:
            self.client = self.module.InferenceServerClient(url)
        self.timeout_s = timeout_s

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """Run `model`; a server-side error raises tritonclient's InferenceServerException with its message."""
        from tritonclient.utils import np_to_triton_dtype

        requests = []
        for name, array in inputs.items():
            datatype = "BYTES" if array.dtype == np.object_ else np_to_triton_dtype(array.dtype)
            item = self.module.InferInput(name, list(array.shape), datatype)
            if self.protocol == "http":
                item.set_data_from_numpy(array, binary_data=True)
            else:
                item.set_data_from_numpy(array)
            requests.append(item)
        wanted = [self.module.InferRequestedOutput(name) for name in outputs]
        if self.protocol == "http":
            result = self.client.infer(model, requests, outputs=wanted)
        else:
            result = self.client.infer(model, requests, outputs=wanted, client_timeout=self.timeout_s)
        return {name: result.as_numpy(name) for name in outputs}

    def first_input(self, model: str) -> tuple[str, str, list[int]]:
        """(name, data type, dims without batch) of the model's first input, from the server's model config."""
        if self.protocol == "http":
            config = self.client.get_model_config(model)
        else:
            config = self.client.get_model_config(model, as_json=True)["config"]
        first = config["input"][0]
        return first["name"], first["data_type"], [int(d) for d in first["dims"]]

    def close(self) -> None:
        self.client.close()
