"""Lazy imports of the Triton packages, each naming the extra that installs it."""

from __future__ import annotations

from types import ModuleType

from optim.errors import import_extra


def model_config_pb2() -> ModuleType:
    return import_extra("tritonclient.grpc.model_config_pb2", "tritonclient", "client", "Reading Triton model configs")


def http_client() -> ModuleType:
    return import_extra("tritonclient.http", "tritonclient", "client", "The Triton HTTP client")


def grpc_client() -> ModuleType:
    return import_extra("tritonclient.grpc", "tritonclient", "client", "The Triton gRPC client")
