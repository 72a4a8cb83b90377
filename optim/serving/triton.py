"""Lazy imports of the Triton packages, each naming the extra that installs it."""

from __future__ import annotations

from optim.errors import MissingExtraError


def model_config_pb2():
    """Triton's model-config protobuf module (shipped in tritonclient's gRPC client)."""
    try:
        from tritonclient.grpc import model_config_pb2 as module
    except ImportError as error:
        raise MissingExtraError("tritonclient", "client", "Reading Triton model configs") from error
    return module


def http_client():
    try:
        import tritonclient.http as module
    except ImportError as error:
        raise MissingExtraError("tritonclient", "client", "The Triton HTTP client") from error
    return module


def grpc_client():
    try:
        import tritonclient.grpc as module
    except ImportError as error:
        raise MissingExtraError("tritonclient", "client", "The Triton gRPC client") from error
    return module
