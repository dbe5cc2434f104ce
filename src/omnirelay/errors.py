"""One error tree for the whole gateway.

    GatewayError                  anything the gateway answers with instead of a result
    ├── ClientError               the request cannot be served as sent (never retried)
    │   ├── BadRequest            400 malformed body, unsupported field
    │   ├── AuthenticationFailed  401 missing or unknown key
    │   ├── PermissionDenied      403
    │   ├── NotFound              404 unknown model or route
    │   └── PayloadTooLarge       413 body over the configured limit
    └── UpstreamError             the provider failed or refused (carries its status, retry-after)
        ├── UpstreamTimeout       504 connect, first byte or idle timeout
        └── UpstreamUnavailable   502 connection refused/reset, malformed upstream answer

Each error knows its HTTP status and a protocol-neutral (type, code, param, message); ingress codecs
render it in their own protocol's error shape.
"""

from __future__ import annotations


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.headers: dict[str, str] = headers or {}


class ClientError(GatewayError):
    status = 400
    type = "invalid_request_error"


class BadRequest(ClientError):
    status = 400


class AuthenticationFailed(ClientError):
    status = 401
    code = "invalid_api_key"


class PermissionDenied(ClientError):
    status = 403
    code = "permission_denied"


class NotFound(ClientError):
    status = 404
    code = "model_not_found"


class PayloadTooLarge(ClientError):
    status = 413
    code = "request_too_large"


class UpstreamError(GatewayError):
    """The upstream answered with an error, or could not be used.

    `retryable` tells the attempt loop whether another deployment may succeed where this one failed.
    """

    status = 502
    type = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        upstream_status: int | None = None,
        retryable: bool = False,
        provider: str | None = None,
    ) -> None:
        super().__init__(message, status=status, type=type, code=code, param=param, headers=headers)
        self.upstream_status = upstream_status
        self.retryable = retryable
        self.provider = provider


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout"
    code = "upstream_timeout"


class UpstreamUnavailable(UpstreamError):
    status = 502
    code = "upstream_unavailable"
