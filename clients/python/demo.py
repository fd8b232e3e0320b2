#!/usr/bin/env python3
"""tokenmesh from Python: the demo flow of `tokenmesh up --demo`.

Logs in as alice, lists her products (keeping the entitlement grant), orders
P-100 with the grant, then makes two refused calls and reads the typed
`google.rpc.ErrorInfo` reason of the one that carries it. Stubs are generated
from ../../proto with grpcio-tools into a temporary directory at start, so they
always match the protos. Exits non-zero if any step does not answer as expected.
"""

import argparse
import importlib.resources
import sys
import tempfile
import uuid

import grpc
from grpc_status import rpc_status
from grpc_tools import protoc
from google.rpc import error_details_pb2
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent.parent.parent / "proto"
PROTOS = [
    "tokenmesh/auth/v1/policy.proto",
    "tokenmesh/auth/v1/auth.proto",
    "tokenmesh/products/v1/products.proto",
    "tokenmesh/orders/v1/orders.proto",
]


def generate_stubs(out_dir: str) -> None:
    """proto/ -> Python messages and gRPC stubs, with grpcio-tools' protoc."""
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *PROTOS,
        ]
    )
    if code != 0:
        sys.exit(f"protoc failed ({code})")
    sys.path.insert(0, out_dir)


def error_info(error: grpc.RpcError):
    """The `google.rpc.ErrorInfo` detail of a refusal, or None."""
    status = rpc_status.from_call(error)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auth", default="127.0.0.1:50051")
    parser.add_argument("--products", default="127.0.0.1:50052")
    parser.add_argument("--orders", default="127.0.0.1:50053")
    parser.add_argument("--user", default="alice")
    parser.add_argument("--password", default="alice-demo")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tokenmesh-stubs-") as stubs:
        generate_stubs(stubs)
        run(args)


def run(args) -> None:
    from tokenmesh.auth.v1 import auth_pb2, auth_pb2_grpc
    from tokenmesh.orders.v1 import orders_pb2, orders_pb2_grpc
    from tokenmesh.products.v1 import products_pb2, products_pb2_grpc

    auth = auth_pb2_grpc.AuthServiceStub(grpc.insecure_channel(args.auth))
    products = products_pb2_grpc.ProductsServiceStub(grpc.insecure_channel(args.products))
    orders = orders_pb2_grpc.OrdersServiceStub(grpc.insecure_channel(args.orders))

    tokens = auth.Login(auth_pb2.LoginRequest(username=args.user, password=args.password))
    print(f"1. logged in as {args.user}: {tokens.token_type} token, expires in {tokens.expires_in} s")
    bearer = [("authorization", f"Bearer {tokens.access_token}")]

    listed = products.ListProducts(products_pb2.ListProductsRequest(), metadata=bearer)
    ids = [product.id for product in listed.products]
    print(f"2. products: {', '.join(ids)}; grant of {len(listed.entitlement_token)} bytes")

    placed = orders.PlaceOrder(
        orders_pb2.PlaceOrderRequest(
            product_id=ids[0],
            quantity=1,
            request_id=f"python-{uuid.uuid4()}",
            entitlement_token=listed.entitlement_token,
        ),
        metadata=bearer,
    )
    source = orders_pb2.EntitlementSource.Name(placed.entitlement_source)
    print(f"3. ordered {placed.product_id}: order {placed.id}, decided by {source}")

    try:
        orders.PlaceOrder(
            orders_pb2.PlaceOrderRequest(
                product_id="P-104", quantity=1, request_id=f"python-{uuid.uuid4()}"
            ),
            metadata=bearer,
        )
        sys.exit("P-104 was ordered: expected PERMISSION_DENIED")
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.PERMISSION_DENIED:
            raise
        print(f"4. P-104 refused: {error.code().name}: {error.details()}")

    try:
        orders.ListOrders(orders_pb2.ListOrdersRequest())
        sys.exit("orders listed without a token: expected UNAUTHENTICATED")
    except grpc.RpcError as error:
        info = error_info(error)
        if error.code() != grpc.StatusCode.UNAUTHENTICATED or info is None:
            raise
        print(
            f"5. no token refused: {error.code().name}, "
            f"ErrorInfo reason {info.reason} (domain {info.domain})"
        )


if __name__ == "__main__":
    main()
