"""Stream.on_event: libzmq's socket events as callbacks on the loop, caused by real peer processes."""
from __future__ import annotations

import errno
import struct

import pytest
import zmq

from helper_procs import PongProc
from monitor_peers import ConnectorProc, CurveServerProc
from pollframe.monitor import SocketEvent, parse_event
from pollframe.stream import Stream
from pollframe.testing import run_until, running

pytestmark = pytest.mark.timeout(30)


class Events(list):
    """The events a stream heard, in order."""

    def named(self, name):
        return [event for event in self if event.name == name]

    def heard(self, name):
        return lambda: self.named(name)


def monitored(ctx, loop, sock_type, **options):
    sock = ctx.socket(sock_type)
    sock.linger = 0
    for option, value in options.items():
        setattr(sock, option, value)
    stream = Stream(sock, loop)
    events = Events()
    stream.on_event(events.append)
    return stream, events


def test_a_stream_hears_connected_when_it_reaches_a_process_and_disconnected_when_the_process_ends(ctx, loop):
    stream, events = monitored(ctx, loop, zmq.DEALER)
    with running(PongProc("127.0.0.1")) as pong:
        stream.socket.connect(pong.endpoint)
        run_until(loop, events.heard("connected"))
        assert events.named("disconnected") == []
    run_until(loop, events.heard("disconnected"))
    connected, disconnected = events.named("connected")[0], events.named("disconnected")[0]
    assert connected.event == zmq.EVENT_CONNECTED and connected.endpoint == pong.endpoint
    assert connected.value > 0, "the value of connected is the connection's file descriptor"
    assert disconnected.event == zmq.EVENT_DISCONNECTED and disconnected.endpoint == pong.endpoint
    assert events.index(connected) < events.index(disconnected)
    stream.close()


def test_a_stream_whose_peer_process_is_gone_hears_closed_for_each_refused_reconnect(ctx, loop):
    stream, events = monitored(ctx, loop, zmq.DEALER, reconnect_ivl=20)
    with running(PongProc("127.0.0.1")) as pong:
        stream.socket.connect(pong.endpoint)
        run_until(loop, events.heard("connected"))
    run_until(loop, events.heard("disconnected"))
    run_until(loop, events.heard("closed"))
    assert events.named("closed")[0].endpoint == pong.endpoint
    stream.close()


def test_a_bound_stream_hears_accepted_when_a_process_connects_and_receives_its_message(ctx, loop):
    stream, events = monitored(ctx, loop, zmq.ROUTER)
    got = []
    stream.on_recv(got.append)
    stream.socket.bind("tcp://127.0.0.1:*")
    endpoint = stream.socket.last_endpoint.decode()
    run_until(loop, events.heard("listening"))
    with running(ConnectorProc(endpoint)):
        run_until(loop, lambda: got and events.named("accepted"))
        assert got[0][-1] == b"hello"
    run_until(loop, events.heard("disconnected"))
    assert events.named("accepted")[0].endpoint == endpoint
    stream.close()


def test_a_handshake_refused_for_its_mechanism_says_why(ctx, loop):
    _, client_secret = zmq.curve_keypair()
    server_public, _ = zmq.curve_keypair()
    stream, events = monitored(ctx, loop, zmq.DEALER, curve_serverkey=server_public,
                               curve_publickey=zmq.curve_public(client_secret), curve_secretkey=client_secret)
    with running(PongProc("127.0.0.1")) as pong:  # no CURVE: a NULL server
        stream.socket.connect(pong.endpoint)
        run_until(loop, events.heard("handshake_failed_protocol"))
    failed = events.named("handshake_failed_protocol")[0]
    assert failed.value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
    assert failed.reason == "ZMTP_MECHANISM_MISMATCH"
    stream.close()


def test_a_handshake_refused_by_the_servers_authenticator_says_why(ctx, loop):
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    stream, events = monitored(ctx, loop, zmq.DEALER, curve_serverkey=server_public,
                               curve_publickey=client_public, curve_secretkey=client_secret)
    with running(CurveServerProc(server_secret)) as server:
        stream.socket.connect(server.endpoint)
        run_until(loop, events.heard("handshake_failed_auth"))
    failed = events.named("handshake_failed_auth")[0]
    assert failed.event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and failed.endpoint == server.endpoint
    assert failed.value == 400 and failed.reason == "ZAP status 400"
    stream.close()


def test_closing_the_stream_closes_its_monitor_and_stops_the_events(ctx, loop):
    stream, events = monitored(ctx, loop, zmq.ROUTER)
    stream.socket.bind("tcp://127.0.0.1:*")
    run_until(loop, events.heard("listening"))
    monitor = stream._monitor.socket
    stream.close()
    assert monitor.closed and not loop.is_registered(monitor)
    loop.run_once(0.05)
    assert [event.name for event in events] == ["listening"]


def test_on_event_none_stops_the_events_and_closes_the_monitor_socket(ctx, loop):
    stream, events = monitored(ctx, loop, zmq.ROUTER)
    monitor = stream._monitor.socket
    stream.on_event(None)
    assert monitor.closed and not loop.is_registered(monitor)
    stream.socket.bind("tcp://127.0.0.1:*")
    loop.run_once(0.05)
    assert events == []
    stream.on_event(events.append)  # monitoring again, on a new monitor socket
    stream.socket.unbind(stream.socket.last_endpoint)
    run_until(loop, events.heard("closed"))
    stream.close()


def test_on_event_with_a_new_callback_hands_the_next_events_to_it_on_the_same_monitor(ctx, loop):
    stream, first = monitored(ctx, loop, zmq.ROUTER)
    monitor = stream._monitor.socket
    second = Events()
    stream.on_event(second.append)
    assert stream._monitor.socket is monitor, "the monitor socket is kept, not made again"
    stream.socket.bind("tcp://127.0.0.1:*")
    run_until(loop, second.heard("listening"))
    assert first == []
    stream.close()


def test_on_event_with_another_event_mask_for_a_running_monitor_raises_and_keeps_the_monitor(ctx, loop):
    stream, events = monitored(ctx, loop, zmq.ROUTER)
    monitor = stream._monitor
    with pytest.raises(ValueError, match="on_event"):
        stream.on_event(print, zmq.EVENT_LISTENING)
    assert stream._monitor is monitor and monitor.callback == events.append
    stream.socket.bind("tcp://127.0.0.1:*")
    run_until(loop, events.heard("listening"))
    stream.close()


def test_an_event_names_itself_and_says_why_a_failure_failed():
    bind_failed = parse_event([struct.pack("=hi", zmq.EVENT_BIND_FAILED, errno.EADDRINUSE), b"tcp://127.0.0.1:1"])
    assert bind_failed == SocketEvent("bind_failed", zmq.EVENT_BIND_FAILED, errno.EADDRINUSE, "tcp://127.0.0.1:1")
    assert "in use" in bind_failed.reason
    assert parse_event([struct.pack("=hi", zmq.EVENT_CONNECTED, 7), b"tcp://h:2"]).reason is None


def test_a_monitored_stream_closed_after_its_loop_still_closes_both_sockets(ctx, loop_class):
    loop = loop_class()
    stream, events = monitored(ctx, loop, zmq.DEALER)
    monitor = stream._monitor.socket
    loop.close()
    stream.close()
    assert monitor.closed and stream.socket.closed
