"""Build a multipart/form-data body (used to relay audio uploads with an edited `model` field)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass(slots=True)
class FilePart:
    filename: str
    content_type: str
    data: bytes


def encode(fields: list[tuple[str, str | FilePart]]) -> tuple[bytes, str]:
    boundary = "omnirelay-" + secrets.token_hex(12)
    out: list[bytes] = []
    for name, value in fields:
        out.append(f"--{boundary}\r\n".encode())
        if isinstance(value, FilePart):
            filename = value.filename.replace('"', "%22")
            out.append(
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {value.content_type}\r\n\r\n".encode()
            )
            out.append(value.data)
        else:
            out.append(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
            out.append(value.encode())
        out.append(b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"
