"""The message tier: decode a message, dispatch it by type, answer failures.

Theory of operation. A :class:`MessageHandler` is the receive callback of a
stream. For each message (a list of frames) it takes the frame at index
``json_load``, refuses it if it is over ``max_size``, decodes it with its
codec into ``(msg_type, args, kwargs)`` and calls the method declared for
that type with ``*args, **kwargs``. Frames before the JSON frame (a ROUTER's
identity and empty delimiter) are the *envelope*: every reply to the message
is sent as ``envelope + [encoded reply]``, so it reaches the right peer.

Only methods marked with :func:`message` are reachable. Each handler class
gets an explicit dispatch table, built once when the class is created, from
the marked functions of the classes in its MRO (never from
:class:`MessageHandler` or ``object``). ``_private`` names, dunders,
``reply``, ``run``, undecorated helpers: none of them can be named by a peer.

Every failure is a :class:`~pollframe.errors.MessageError`. It is logged on
the ``pollframe.handler`` logger, counted in ``handler.errors`` by kind, and,
with a ``reply_stream``, answered with ``["error", [reason], {}]`` unless the
handler already replied. A handler that returns None without replying is
counted as ``no_reply``; with ``always_reply`` (the default when the reply
stream's socket is REP) its sender gets ``["error", ["handler sent no
reply"], {}]``. So on a REP socket every request gets exactly one reply and
a REQ peer is never left waiting. ``__call__`` never raises for bad input:
the loop goes on with the next message.

Replying later. A plain handler that must first ask another service takes
a :class:`ReplyToken` with :meth:`MessageHandler.reply_later` and answers
through it when it can; an ``@message async def`` handler is the same
thing written as a coroutine: it runs as a task on the stream's loop (see
:mod:`pollframe.tasks`), and what it returns is the reply, sent when it
returns. Several requests may be in progress at once on a ROUTER or DEALER
stream; on REP one at a time, as the socket itself requires (it delivers no
request before the reply to the last). A token dropped without a reply is
noticed when it is collected: logged, counted as ``reply_forgotten``, and,
with ``always_reply``, answered with an error reply.

Limits against one peer. Peer-fault warnings are throttled to the 1st,
10th, 100th, ... occurrence (``errors`` keeps the exact counts), and the
envelope a reply echoes is bounded (``max_envelope_frames``,
``max_envelope_bytes``): a message with a larger one is counted as
``bad_envelope`` and never answered, so a peer cannot make the process
send back what it stuffed into the envelope.

Retried requests. Given a :class:`~pollframe.replycache.ReplyCache` as
``replies``, a handler executes a request that carries its own id once
while its entry lives, and answers its copies with the same reply frames
(see :mod:`pollframe.replycache`).

The message tier imports no zmq (``import pollframe.handler`` loads only
the codec, the errors, the reply cache and the task runner).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import Counter
from typing import Any, Callable, Coroutine, Dict, FrozenSet, Protocol, Sequence, TypeVar, Union, overload

from pollframe import tasks
from pollframe.codec import Codec, JsonCodec, to_triple
from pollframe.errors import (
    BadArguments,
    BadEnvelope,
    BadShape,
    DecodeError,
    HandlerFailed,
    MessageError,
    TooLarge,
    UnknownType,
    shorten,
    worth_logging,
)
from pollframe.replycache import ReplyCache, request_key
from pollframe.units import MAX_MSG_SIZE

log = logging.getLogger("pollframe.handler")

NO_REPLY = "handler sent no reply"
"""The reason of the error reply ``always_reply`` sends for a handler that did not reply."""

FORGOTTEN = "handler dropped its reply token without replying"
"""The reason of the error reply ``always_reply`` sends for a forgotten :class:`ReplyToken`."""

# zmq.REP's value: the message tier does not import zmq (a reply stream may
# be any object with send_multipart), yet it must know a REP socket, whose
# lockstep a missing reply breaks for good, and a ROUTER, whose first frame is
# the routing id (not part of a request's own id).
_ZMQ_REP = 4
_ZMQ_ROUTER = 6

_MARK = "_pollframe_message_types"
_INSTANCE_ATTRS = frozenset(
    {"json_load", "reply_stream", "codec", "max_size", "always_reply", "errors", "loop", "replies"}
)

F = TypeVar("F", bound=Callable[..., Any])


class ReplyStream(Protocol):
    """Anything replies can be sent on: a Stream, a zmq socket, a fake."""

    def send_multipart(self, frames: list[bytes]) -> Any:
        """Send one message of ``frames``."""


def _check_type_name(msg_type: str) -> None:
    if not isinstance(msg_type, str) or not msg_type or msg_type.startswith("_"):
        raise ValueError(f"message type {msg_type!r} is not a string, is empty or starts with '_'")


def _mark(func: F, msg_type: str | None) -> F:
    if not inspect.isfunction(func):
        raise TypeError(f"@message marks a plain function (def ...), not {func!r}")
    if msg_type is None:
        msg_type = func.__name__
    _check_type_name(msg_type)
    setattr(func, _MARK, getattr(func, _MARK, ()) + (msg_type,))
    return func


@overload
def message(arg: F) -> F: ...
@overload
def message(arg: str | None = None) -> Callable[[F], F]: ...


def message(arg: Any = None) -> Any:
    """Declare a method a message handler, reachable by a peer.

    ``@message`` serves the message type named like the method;
    ``@message("other-name")`` serves that type instead. Stack the decorator
    to serve several types with one method. A type must not start with ``_``.
    """
    if arg is None or isinstance(arg, str):
        if arg is not None:
            _check_type_name(arg)  # fail at the decorator line, not later
        return lambda func: _mark(func, arg)
    return _mark(arg, None)


class MessageHandler:
    """Dispatch messages to the methods a subclass marks with :func:`message`.

    ``json_load`` is the index of the frame holding the message (default the
    last). ``reply_stream`` is where replies go: any object with
    ``send_multipart(frames)``; without it nothing is ever sent. ``codec``
    replaces :class:`~pollframe.codec.JsonCodec`. ``max_size`` (bytes, or
    ``None`` for no limit; default :data:`~pollframe.units.MAX_MSG_SIZE`)
    is checked before decoding. ``always_reply``:
    see "No reply" below. ``loop`` runs ``async def`` handlers (default:
    the reply stream's ``loop``).

    Replies. A handler replies with :meth:`reply`, or by returning a value:
    a non-None return value ``[type, args, kwargs]`` or ``[type, data]``
    (list or tuple) is sent as the reply, so a logic-tier method's result can
    be returned as it is. A return value that is not such a message is a
    handler failure (error reply). A handler that already called
    :meth:`reply` must return None: a second reply would break REP lockstep,
    so the return value is dropped and logged as a failure. Without a
    ``reply_stream`` return values are ignored.

    Handlers run one message at a time (a handler must not call the
    handler object itself re-entrantly): ``reply`` and ``envelope`` refer to
    the message being handled and raise RuntimeError outside of one.

    Later replies. :meth:`reply_later` hands out a :class:`ReplyToken` for
    the message being handled; the handler returns None and answers through
    the token whenever it can, with no warning and nothing counted. An
    ``@message async def`` handler replies with its return value when its
    coroutine returns (an exception becomes the error reply). Both work on
    ROUTER and DEALER streams, several requests at once; on a REP stream
    the socket takes no request before the last one's reply.

    No reply. A handler that returns None without replying (or taking a
    token) while a ``reply_stream`` is set is logged and counted as
    ``errors["no_reply"]``. With ``always_reply`` its sender then gets
    ``["error", ["handler sent no reply"], {}]``: a REP socket that does not
    answer a request can never receive again, so ``always_reply`` defaults to
    True when the reply stream's ``socket`` is REP, and to False otherwise.

    Messages that are not replies: :meth:`send` sends ``[msg_type, args,
    kwargs]`` on the reply stream (a DEALER, REQ, PUSH or PUB stream: a
    ROUTER needs an envelope, use a token).

    Retried requests. With ``replies`` (a
    :class:`~pollframe.replycache.ReplyCache`) a request that carries an id
    of its own (a Requester's ``[id, b"", json]``; on a ROUTER the routing
    id is not part of it) is executed once while its entry lives: a copy
    that arrives while it is in progress (an async handler, a reply token)
    is dropped, and a copy that arrives after the reply gets the same reply
    frames again, error replies included, without being decoded. A request
    with no id (REQ clients) is served as without the cache. A REP stream
    strips the ids, so it is refused (ValueError): serve retried requests on
    a ROUTER.
    """

    _handlers: Dict[str, Callable[..., Any]] = {}
    _signatures: Dict[str, inspect.Signature] = {}
    _coroutines: FrozenSet[str] = frozenset()

    #: Most frames before the JSON frame that a reply echoes (a larger envelope is refused).
    max_envelope_frames: int = 32
    #: Most bytes in the frames before the JSON frame that a reply echoes.
    max_envelope_bytes: int = 8192

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handlers = _collect_handlers(cls)
        cls._signatures = {t: inspect.signature(f) for t, f in cls._handlers.items()}
        cls._coroutines = frozenset(t for t, f in cls._handlers.items() if inspect.iscoroutinefunction(f))

    def __init__(
        self,
        json_load: int = -1,
        *,
        reply_stream: ReplyStream | None = None,
        codec: Codec | None = None,
        max_size: int | None = MAX_MSG_SIZE,
        always_reply: bool | None = None,
        loop: Any = None,
        replies: ReplyCache | None = None,
    ) -> None:
        self.json_load = json_load
        self.reply_stream = reply_stream
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.max_size = max_size
        kind = _socket_type(reply_stream)
        self.always_reply = kind == _ZMQ_REP if always_reply is None else always_reply
        self.loop = loop if loop is not None else getattr(reply_stream, "loop", None)
        if replies is not None and kind == _ZMQ_REP:
            raise ValueError("a REP socket strips the request ids a ReplyCache keys on: serve on a ROUTER")
        self.replies = replies
        self._routing = 1 if kind == _ZMQ_ROUTER else 0  # frames before a request's own id
        self._keyed: tuple[Any, Any, float] = (None, None, 0.0)  # the last request asked about, its key, when
        self.errors: Counter[str] = Counter()
        self.__frames: list[bytes] | None = None
        self.__replied: Union[bool, ReplyToken] = False  # or the ReplyToken taken for this message
        self.__peer_faults = 0

    def __call__(self, msg: list[bytes] | bytes) -> None:
        """Handle one message: a list of frames (or one frame, as bytes)."""
        if isinstance(msg, bytes):
            msg = [msg]  # a single-frame callback (multipart=False)
        elif len(msg) > 1:
            if not self._envelope_fits(msg):
                return
            if self.replies is not None and self._seen(msg):
                return
        self.__frames = msg
        self.__replied = False
        try:
            msg_type, args, kwargs = self._decode(msg)
            func = self._handlers.get(msg_type)
            if func is None:
                raise UnknownType(f"unknown message type {shorten(msg_type)}")
            result = self._invoke(func, msg_type, args, kwargs)
            if msg_type in self._coroutines:
                self._start(msg_type, result)
            elif result is not None:
                self._reply_with_result(msg_type, result)
            elif not self.__replied and self.reply_stream is not None:
                self._no_reply(msg_type)
        except MessageError as err:
            self.handle_error(err)
        finally:
            self.__frames = None
            self.__replied = False  # a token taken is the handler's to keep, not ours

    @property
    def envelope(self) -> list[bytes]:
        """The frames before the JSON frame of the message being handled."""
        if self.__frames is None:
            raise RuntimeError("no message is being handled")
        return self.__frames[: self.json_load]

    def reply(self, msg_type: str, /, *args: Any, **kwargs: Any) -> None:
        """Send ``[msg_type, args, kwargs]`` to the sender of this message."""
        if self.__frames is None:
            raise RuntimeError("reply() is only possible while a message is handled; "
                               "to reply later, take a token with reply_later()")
        if self.reply_stream is None:
            raise RuntimeError("this handler has no reply_stream")
        if isinstance(self.__replied, ReplyToken):
            raise RuntimeError("this message's reply goes through the token reply_later() gave")
        self._send(msg_type, args, kwargs)

    def reply_later(self) -> ReplyToken:
        """Take the reply of the message being handled out of the call: answer it with the token.

        The handler then returns None; no "sent no reply" warning, nothing
        counted. ``token.reply(...)`` (or ``token.error(reason)``) sends the
        one reply, whenever the handler can. A token collected without a
        reply is logged and counted as ``reply_forgotten`` (and, with
        ``always_reply``, answered with an error reply).
        """
        frames = self.__frames
        if frames is None:
            raise RuntimeError("reply_later() is only possible while a message is handled")
        if self.reply_stream is None:
            raise RuntimeError("this handler has no reply_stream")
        if self.__replied:
            raise RuntimeError("this message was already replied to (or has its token)")
        token = ReplyToken(self, frames, self._current_type(frames))
        self.__replied = token
        return token

    def send(self, msg_type: str, /, *args: Any, **kwargs: Any) -> None:
        """Send ``[msg_type, args, kwargs]`` on the reply stream: a message that is not a reply.

        Raises :class:`~pollframe.errors.EncodeError` for what cannot be
        encoded and whatever the stream raises (``QueueFull``): a send that
        the caller asked for is not dropped silently.
        """
        if self.reply_stream is None:
            raise RuntimeError("this handler has no reply_stream to send on")
        self.reply_stream.send_multipart([self.codec.encode(msg_type, args, kwargs)])

    def handle_error(self, err: MessageError) -> None:
        """Log and count a failed message; answer it if nothing was replied.

        The policy in one place: override it to change it (a test may
        re-raise). A peer's fault is one warning line, throttled to the 1st,
        10th, 100th, ... of them (``errors`` counts every one); a handler's
        fault is logged with the traceback of what it raised.
        """
        self.errors[err.kind] += 1
        if err.peer_fault:
            self.__peer_faults += 1
            if worth_logging(self.__peer_faults):
                log.warning("refused message: %s (%d refused so far)", err.reason, self.__peer_faults)
        else:
            log.error("%s", err.reason, exc_info=err.__cause__)
        replied = self.__replied
        if isinstance(replied, ReplyToken) and not replied.done:  # failed after taking its token
            replied.done = True
            replied = False
        if self.reply_stream is not None and self.__frames is not None and not replied:
            self._send("error", [err.reason], {})

    # ------------------------------------------------------------ internals

    def _envelope_fits(self, msg: list[bytes]) -> bool:
        """Refuse (count, log throttled, never answer) a message whose envelope is over the bounds."""
        envelope = msg[: self.json_load]
        if len(envelope) <= self.max_envelope_frames and sum(map(len, envelope)) <= self.max_envelope_bytes:
            return True
        self.errors[BadEnvelope.kind] += 1
        self.__peer_faults += 1
        if worth_logging(self.__peer_faults):
            log.warning("refused message: an envelope of %d frame(s), %d bytes is over the bounds (%d, %d); "
                        "not answered (%d refused so far)", len(envelope), sum(map(len, envelope)),
                        self.max_envelope_frames, self.max_envelope_bytes, self.__peer_faults)
        return False

    def _seen(self, msg: list[bytes]) -> bool:
        """Whether the reply cache knows this request; if so its stored reply is sent (if it has one)."""
        key = request_key(msg, self.json_load, self._routing)
        if key is None:
            self._keyed = msg, None, 0.0
            return False
        now = self._now()
        self._keyed = msg, key, now  # a reply sent while it is handled need not compute them again
        assert self.replies is not None
        reply = self.replies.arrived(key, now)
        if reply is None:
            return False
        if reply and self.reply_stream is not None:  # the handler stores replies of one frame
            self._deliver(msg, reply[0], "stored reply", remember=False)
        return True

    def _now(self) -> float:
        return self.loop.time() if self.loop is not None else time.monotonic()

    def _current_type(self, frames: list[bytes]) -> str:
        try:
            return self.codec.decode(frames[self.json_load])[0]
        except Exception:  # only for log lines
            return "?"

    def _start(self, msg_type: str, coro: Coroutine[Any, Any, Any]) -> None:
        """Run an async handler's coroutine as a task that replies with what it returns."""
        if self.reply_stream is None:
            token = None
        else:
            token = ReplyToken(self, self.__frames, msg_type)  # type: ignore[arg-type]
            self.__replied = token
        serve = self._serve(msg_type, coro, token)
        if self.loop is not None:
            tasks.spawn(self.loop, serve, name=f"handler for {msg_type}")
        else:  # a fake stream: steps run where the awaited waiters complete
            tasks.Task(serve, None, name=f"handler for {msg_type}")._step()

    async def _serve(self, msg_type: str, coro: Coroutine[Any, Any, Any], token: ReplyToken | None) -> None:
        failure: MessageError | None = None
        result: Any = None
        try:
            result = await coro
        except tasks.Cancelled:
            if token is not None:
                token.done = True  # the loop is closing: no reply, and nothing forgotten
            raise
        except MessageError as err:
            failure = err
        except Exception as exc:
            failure = HandlerFailed(f"handler for {shorten(msg_type)} failed ({type(exc).__name__})")
            failure.__cause__ = exc
        if token is None:
            if failure is not None:
                self.handle_error(failure)
            return
        token.done = True
        outer = self.__frames, self.__replied
        self.__frames, self.__replied = token.frames, False  # as if it were being handled now
        try:
            if failure is None:
                try:
                    if result is None:
                        self._no_reply(msg_type)
                    else:
                        self._reply_with_result(msg_type, result)
                except MessageError as err:
                    failure = err
            if failure is not None:
                self.handle_error(failure)
        finally:
            self.__frames, self.__replied = outer

    def _no_reply(self, msg_type: str) -> None:
        self.errors["no_reply"] += 1
        if self.always_reply:
            log.warning("handler for %s sent no reply; sending an error reply", shorten(msg_type))
            self._send("error", [NO_REPLY], {})
        else:
            log.warning("handler for %s sent no reply", shorten(msg_type))

    def _send(self, msg_type: str, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        frames = self.__frames
        assert self.reply_stream is not None and frames is not None, "callers check both"
        frame = self.codec.encode(msg_type, args, kwargs)
        self.__replied = True  # tried: a second attempt would break REP lockstep
        self._deliver(frames, frame, msg_type)

    def _deliver(self, request: list[bytes], frame: bytes, msg_type: str, remember: bool = True) -> None:
        """Send the reply *frame* to the sender of *request*, first kept in the reply cache (if any).

        A failure to send is counted and logged (throttled), never raised into the loop.
        """
        if remember and self.replies is not None:
            keyed, key, now = self._keyed
            if keyed is not request:  # a later reply (a token, an async handler)
                key, now = request_key(request, self.json_load, self._routing), self._now()
            if key is not None:
                self.replies.replied(key, (frame,), now)
        stream = self.reply_stream
        assert stream is not None
        try:
            stream.send_multipart(request[: self.json_load] + [frame])
        except Exception as exc:  # a full queue, a socket error: the loop must go on
            self.errors["reply_failed"] += 1
            if worth_logging(self.errors["reply_failed"]):
                log.warning("reply %s could not be sent: %s: %s (%d failed so far)", shorten(msg_type),
                            type(exc).__name__, exc, self.errors["reply_failed"])

    def _forgotten(self, token: ReplyToken) -> None:
        """A token was collected without a reply (called from its ``__del__``)."""
        self.errors["reply_forgotten"] += 1
        log.warning("handler for %s dropped its reply token without replying%s", shorten(token.msg_type),
                    "; sending an error reply" if self.always_reply else "")
        if self.always_reply and self.loop is not None and not getattr(self.loop, "closed", True):
            # Not from __del__ itself: it may run in the middle of another send on this stream.
            frame = self.codec.encode("error", [FORGOTTEN], {})
            self.loop.call_soon(self._deliver, token.frames, frame, "error")

    def _decode(self, msg: list[bytes]) -> tuple[str, list[Any], dict[str, Any]]:
        try:
            frame = msg[self.json_load]
        except IndexError:
            raise BadShape(f"message of {len(msg)} frame(s) has no frame {self.json_load}") from None
        if self.max_size is not None and len(frame) > self.max_size:
            raise TooLarge(f"frame of {len(frame)} bytes is over the limit of {self.max_size}")
        try:
            return self.codec.decode(frame)
        except MessageError:
            raise
        except Exception as exc:  # a replacement codec must not end the loop either
            raise DecodeError(f"cannot decode ({type(exc).__name__})") from exc

    def _invoke(
        self, func: Callable[..., Any], msg_type: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        # Call first and check the signature only on TypeError: binding costs
        # more than the call itself, and a call that cannot bind has not run.
        try:
            return func(self, *args, **kwargs)
        except MessageError:
            raise  # a handler may refuse a request with a reason of its own
        except TypeError as exc:
            try:
                self._signatures[msg_type].bind(self, *args, **kwargs)
            except TypeError as bind_error:
                raise BadArguments(f"bad arguments for {shorten(msg_type)}: {str(bind_error)[:80]}") from None
            raise HandlerFailed(f"handler for {shorten(msg_type)} failed ({type(exc).__name__})") from exc
        except Exception as exc:
            raise HandlerFailed(f"handler for {shorten(msg_type)} failed ({type(exc).__name__})") from exc

    def _reply_with_result(self, msg_type: str, result: Any) -> None:
        if self.reply_stream is None:
            return
        if self.__replied:
            raise HandlerFailed(f"handler for {shorten(msg_type)} replied and returned a value (dropped)")
        if type(result) is list and len(result) == 3:  # the common case, checked inline (as in decode)
            reply_type, args, kwargs = result
            if type(reply_type) is str and type(args) is list and type(kwargs) is dict:
                self._send(reply_type, args, kwargs)
                return
        try:
            reply_type, args, kwargs = to_triple(result)
        except BadShape:
            raise HandlerFailed(
                f"handler for {shorten(msg_type)} returned {type(result).__name__}, "
                "not [type, args, kwargs] or [type, data]"
            ) from None
        self._send(reply_type, args, kwargs)


class ReplyToken:
    """The reply of one message, taken out of its handler's call by :meth:`MessageHandler.reply_later`.

    Send it once, whenever the answer is ready: :meth:`reply` or
    :meth:`error`. A second use raises RuntimeError. A token that is
    collected without having been used is reported by its handler (logged,
    counted as ``reply_forgotten``, answered with an error reply under
    ``always_reply``), so a forgotten reply never passes silently.
    """

    __slots__ = ("_handler", "frames", "msg_type", "done")

    def __init__(self, handler: MessageHandler, frames: list[bytes], msg_type: str) -> None:
        self._handler = handler
        #: The frames of the message this token answers, as received.
        self.frames = frames
        #: The type of the message this token answers.
        self.msg_type = msg_type
        #: True once the reply was sent (or settled otherwise).
        self.done = False

    def reply(self, msg_type: str, /, *args: Any, **kwargs: Any) -> None:
        """Send ``[msg_type, args, kwargs]`` to the sender of the message.

        Raises :class:`~pollframe.errors.EncodeError` (and stays unused) if
        the reply cannot be encoded; RuntimeError if the token was used.
        """
        if self.done:
            raise RuntimeError(f"the reply to {self.msg_type!r} was already sent")
        frame = self._handler.codec.encode(msg_type, args, kwargs)
        self._settle()
        self._handler._deliver(self.frames, frame, msg_type)

    def error(self, reason: str) -> None:
        """Send the error reply ``["error", [reason], {}]``."""
        self.reply("error", reason)

    @property
    def envelope(self) -> list[bytes]:
        """The frames the reply is sent behind (a ROUTER's envelope)."""
        return self.frames[: self._handler.json_load]

    def _settle(self) -> None:
        if self.done:
            raise RuntimeError(f"the reply to {self.msg_type!r} was already sent")
        self.done = True

    def __del__(self) -> None:
        if not self.done:
            try:
                self._handler._forgotten(self)
            except Exception:  # noqa: S110 - nothing may escape a __del__
                pass

    def __repr__(self) -> str:
        return f"<ReplyToken {self.msg_type!r} {'sent' if self.done else 'pending'}>"


def _socket_type(stream: object) -> int | None:
    """The zmq type of *stream*'s ``socket`` (None for a fake or a plain object)."""
    try:
        return getattr(getattr(stream, "socket", None), "type", None)
    except Exception:  # a closed socket cannot say
        return None


def _collect_handlers(cls: type) -> dict[str, Callable[..., Any]]:
    """Build the dispatch table of *cls*: message type -> function.

    Walks the MRO from the root, skipping ``object`` and MessageHandler. A
    class that redefines an attribute drops the message types its ancestors
    declared under that attribute unless it marks the new function again:
    only marked functions are ever reachable.
    """
    table: dict[str, tuple[str, Callable[..., Any]]] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass is MessageHandler:
            continue
        own = vars(klass)
        table = {t: entry for t, entry in table.items() if entry[0] not in own}
        declared_here: set[str] = set()
        for attr, value in own.items():
            if not inspect.isfunction(value):
                continue
            for msg_type in getattr(value, _MARK, ()):
                if hasattr(MessageHandler, attr) or attr in _INSTANCE_ATTRS:
                    raise TypeError(f"{klass.__name__}.{attr} would replace MessageHandler.{attr}")
                if msg_type in declared_here:
                    raise ValueError(f"{klass.__name__} declares message type {msg_type!r} twice")
                declared_here.add(msg_type)
                table[msg_type] = (attr, value)
    return {t: func for t, (_, func) in table.items()}
