"""The Secrets Store CSI driver's side of a provider call, from an independent gRPC stack.

Usage: csi_client.py SOCKET OUT_DIR ATTRIBUTES_JSON PERMISSION

Generates the client from tests/interop/csi/provider.proto with grpcio-tools into OUT_DIR, calls
Version and then Mount over the Unix socket as the driver does, and prints one JSON object:
the version answer and the files (contents base64) and object versions, or the gRPC error's
code and details.
"""

import base64
import json
import os
import sys

import grpc
from grpc_tools import protoc


def main() -> None:
    socket, out_dir, attributes, permission = sys.argv[1:5]
    proto_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csi")
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            "provider.proto",
        ]
    )
    if status != 0:
        raise SystemExit(f"protoc failed: {status}")
    sys.path.insert(0, out_dir)
    import provider_pb2
    import provider_pb2_grpc

    # The driver (grpc-go) sends `:authority: localhost` on a Unix socket; grpc-python would
    # send the escaped socket path, which HTTP/2 servers (h2) refuse as an authority.
    options = [("grpc.default_authority", "localhost")]
    with grpc.insecure_channel(f"unix://{socket}", options=options) as channel:
        stub = provider_pb2_grpc.CSIDriverProviderStub(channel)
        version = stub.Version(provider_pb2.VersionRequest(version="v1.6.0"), timeout=10)
        seen = {
            "version": {
                "version": version.version,
                "runtime_name": version.runtime_name,
                "runtime_version": version.runtime_version,
            }
        }
        request = provider_pb2.MountRequest(
            attributes=attributes,
            secrets="{}",
            target_path="/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/secrets/mount",
            permission=permission,
        )
        try:
            mounted = stub.Mount(request, timeout=20)
            seen["files"] = [
                {
                    "path": f.path,
                    "mode": f.mode,
                    "contents": base64.b64encode(f.contents).decode(),
                }
                for f in mounted.files
            ]
            seen["object_version"] = [
                {"id": o.id, "version": o.version} for o in mounted.object_version
            ]
        except grpc.RpcError as e:
            seen["error"] = {"code": e.code().name, "details": e.details()}
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
