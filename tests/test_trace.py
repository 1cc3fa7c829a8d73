"""The tracer: its file format, its recorder, and rendering the seed's message chains."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import zmq

from pollframe import trace, tracefile, tracefmt
from pollframe.loop import PollLoop
from pollframe.testing.chains import assert_chain, chains_in
from pollframe.tracefmt import Namer, render_frames, show_frame

PING_CHAIN = """
    PingProc      PongProc
     [REQ] ---1--> [ROUTER]
           <--2---

    1 IN : ['ping, [count], {}']
    1 OUT: [ping_id, '', 'ping, [count], {}']

    2 IN : [ping_id, '', 'pong, [count], {}']
    2 OUT: ['pong, [count], {}']
"""


@pytest.fixture
def req_router(ctx):
    router = ctx.socket(zmq.ROUTER)
    router.bind("inproc://trace-router")
    req = ctx.socket(zmq.REQ)
    req.connect("inproc://trace-router")
    return req, router


def exchange(req, router, ping_ch, pong_ch, request, reply):
    req.send(request)
    ping_ch.sent([request])
    frames = router.recv_multipart()
    pong_ch.received(frames)
    answer = frames[:2] + [reply]
    router.send_multipart(answer)
    pong_ch.sent(answer)
    ping_ch.received(req.recv_multipart())


@pytest.fixture
def ping_pong_trace(tmp_path, req_router):
    """A trace directory: PingProc's REQ asked PongProc's ROUTER three pings, then four heartbeats."""
    req, router = req_router
    ping = trace.Recorder(str(tmp_path), name="PingProc")
    pong = trace.Recorder(str(tmp_path), name="PongProc")
    ping_ch, pong_ch = ping.channel(req), pong.channel(router)
    for i in range(3):
        exchange(req, router, ping_ch, pong_ch, b'["ping", [%d], {}]' % i, b'["pong", [%d], {}]' % i)
    for _ in range(4):
        exchange(req, router, ping_ch, pong_ch, b'["hb", [], {}]', b'["hb", [], {}]')
    ping.close()
    pong.close()
    return tmp_path


# ------------------------------------------------------------------ the file format


def test_a_trace_file_cut_short_keeps_every_whole_record_and_says_it_was_cut():
    data = bytearray(tracefile.MAGIC)
    data += tracefile.encode_meta(tracefile.SOCKET, 1, 0.0, {"type": "PUSH", "endpoint": ""})
    for i in range(3):
        body = b"message %d" % i
        data += tracefile.HEADER.pack(tracefile.SENT, 1, float(i), 1)
        data += tracefile.LENGTH.pack(len(body)) + body
    whole = tracefile.parse(bytes(data))
    cut = tracefile.parse(bytes(data[:-3]))
    assert [r.frames for r in whole.records] == [[b"message 0"], [b"message 1"], [b"message 2"]]
    assert [r.frames for r in cut.records] == [[b"message 0"], [b"message 1"]]
    assert cut.truncated and not whole.truncated


@pytest.mark.parametrize("cut", [0, 1, len(tracefile.MAGIC) - 1])
def test_a_trace_file_read_before_its_magic_was_written_whole_is_empty_and_cut(cut):
    read = tracefile.parse(tracefile.MAGIC[:cut])
    assert read.records == [] and read.process is None and read.truncated


def test_a_router_identity_passed_on_in_another_envelope_keeps_its_name():
    namer = Namer()
    client, worker = b"\x00\x6b\x8b\x45\x67", b"\x00\x6b\x8b\x45\x99"
    assert render_frames([client, b"", b"7"], "ROUTER", namer) == "[peer-1, '', b'7']"
    assert render_frames([worker, client, b"", b"7"], "ROUTER", namer) == "[peer-2, peer-1, '', b'7']"


def test_a_file_that_is_not_a_trace_is_refused_by_name():
    with pytest.raises(ValueError, match="not a pollframe trace file"):
        tracefile.parse(b"hello")


# ------------------------------------------------------------------ the recorder


def test_a_recorder_writes_nothing_until_it_flushes_and_then_every_record(tmp_path, req_router):
    req, _ = req_router
    rec = trace.Recorder(str(tmp_path), name="Writer")
    channel = rec.channel(req)
    channel.sent([b"one", b"two"])
    assert os.listdir(tmp_path) == []
    rec.flush()
    (name,) = os.listdir(tmp_path)
    assert name.startswith(f"Writer-{os.getpid()}")
    parsed = tracefile.parse((tmp_path / name).read_bytes())
    assert parsed.process.name == "Writer"
    assert parsed.sockets[channel.id] == {"type": "REQ", "endpoint": "inproc://trace-router"}
    assert [(r.kind, r.frames) for r in parsed.records] == [(tracefile.SENT, [b"one", b"two"])]


def test_a_recorder_writes_out_when_its_buffer_is_full(tmp_path, req_router):
    req, _ = req_router
    rec = trace.Recorder(str(tmp_path), name="Writer")
    rec_ch = rec.channel(req)
    big = b"x" * (rec.max_buffer // 4)
    for _ in range(3):
        rec_ch.sent([big])
    assert os.listdir(tmp_path) == []
    rec_ch.sent([big])  # the buffer now holds more than max_buffer bytes
    (name,) = os.listdir(tmp_path)
    assert len(tracefile.parse((tmp_path / name).read_bytes()).records) == 4


def test_a_recorder_records_frames_of_any_buffer_type_and_skips_what_is_not_one(tmp_path, req_router):
    req, _ = req_router
    rec = trace.Recorder(str(tmp_path), name="Writer")
    channel = rec.channel(req)
    channel.sent([bytearray(b"ab"), memoryview(b"cd"), zmq.Frame(b"ef")])
    channel.sent(["a str is not a frame"])
    rec.flush()
    (name,) = os.listdir(tmp_path)
    records = tracefile.parse((tmp_path / name).read_bytes()).records
    assert [r.frames for r in records] == [[b"ab", b"cd", b"ef"]]
    assert rec.failures == 1


KILLED_CHILD = textwrap.dedent("""
    import os, signal, sys, zmq
    from pollframe import trace
    rec = trace.Recorder(sys.argv[1], name="Victim")
    ch = rec.channel(sock_type="PUSH", endpoint="")
    for i in range(3):
        ch.sent([b"kept %d" % i])
    rec.flush()
    ch.sent([b"lost"])
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_process_killed_mid_run_keeps_its_records_up_to_the_last_flush(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", KILLED_CHILD, str(tmp_path)], env=env, timeout=30)
    assert proc.returncode == -signal.SIGKILL
    (name,) = os.listdir(tmp_path)
    frames = [r.frames for r in tracefile.parse((tmp_path / name).read_bytes()).records]
    assert frames == [[b"kept 0"], [b"kept 1"], [b"kept 2"]]


def test_tracing_is_off_unless_enabled_and_enable_reaches_child_processes(tmp_path, monkeypatch):
    monkeypatch.delenv(trace.ENV, raising=False)
    monkeypatch.setattr(trace, "_recorder", None)
    monkeypatch.setattr(trace, "_env_read", False)
    assert trace.recorder() is None
    try:
        rec = trace.enable(tmp_path / "run")
        assert trace.recorder() is rec
        assert os.environ[trace.ENV] == str(tmp_path / "run")
    finally:
        trace.disable()
    assert trace.recorder() is None and trace.ENV not in os.environ


def test_a_forked_child_writes_its_own_file_and_not_its_parents_records(tmp_path, req_router):
    req, _ = req_router
    rec = trace.Recorder(str(tmp_path), name="Parent")
    channel = rec.channel(req)
    channel.sent([b"before the fork"])
    pid = os.fork()
    if pid == 0:  # the child
        try:
            channel.sent([b"from the child"])
            rec.flush()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    rec.flush()
    by_pid = {}
    for name in os.listdir(tmp_path):
        parsed = tracefile.parse((tmp_path / name).read_bytes())
        by_pid[parsed.process.pid] = [r.frames for r in parsed.records]
    assert by_pid == {os.getpid(): [[b"before the fork"]], pid: [[b"from the child"]]}


# ------------------------------------------------------------------ frames as the seed writes them


@pytest.mark.parametrize("frame, shown", [
    (b"", "''"),
    (b'["ping", [3], {}]', "'ping, [3], {}'"),
    (b'["error", ["not \'three\'"], {}]', "'error, [\"not \\'three\\'\"], {}'"),
    (b'{"a": 1}', "'{\"a\": 1}'"),
    (b"weather", "b'weather'"),
    (b"\x00\x80\x00\x00\x29", "0x0080000029"),
    (bytes(range(20)), "0x0001020304050607...(20 bytes)"),
])
def test_a_frame_is_shown_decoded_when_it_is_json_and_shortened_when_it_is_binary(frame, shown):
    assert show_frame(frame) == shown


def test_router_identities_and_correlation_ids_get_short_names_that_stay_the_same():
    namer = Namer()
    alice, bob, corr = b"\x00\x80\x00\x00\x01", b"\x00\x80\x00\x00\x02", b"\x07\x00\x00\x00"
    assert render_frames([alice, b"", b'["ping", 1]'], "ROUTER", namer) == "[peer-1, '', 'ping, 1']"
    assert render_frames([bob, corr, b"", b"[]"], "ROUTER", namer) == "[peer-2, id-1, '', '[]']"
    assert render_frames([corr, b"", b"[]"], "DEALER", namer) == "[id-1, '', '[]']"
    assert render_frames([alice, b"", b"x"], "ROUTER", namer).startswith("[peer-1,")


# ------------------------------------------------------------------ merging and rendering


def test_a_trace_renders_as_the_seeds_diagram_and_in_out_lines_with_repeats_folded(ping_pong_trace):
    text = tracefmt.render(tracefmt.merge(tracefmt.load(str(ping_pong_trace))))
    lines = [line.rstrip() for line in text.splitlines()]
    assert lines[0] == "Conversation 1: PingProc, PongProc (14 messages)"
    assert " ".join(lines[2].split()) == "PingProc PongProc"
    assert " ".join(lines[3].split()) == "[REQ] ---1--> [ROUTER]"
    assert " ".join(lines[4].split()) == "<--2---"
    assert "    1 IN : ['ping, [0], {}']" in lines
    assert "    1 OUT: [peer-1, '', 'ping, [0], {}']" in lines
    assert "    2 IN : [peer-1, '', 'pong, [0], {}']" in lines
    assert "    8 OUT: ['hb, [], {}']" in lines
    assert "    (7-8 repeated x4)" in lines
    assert not any(line.startswith("    9 ") for line in lines)
    assert "(7-8 x4)" in text


def test_mermaid_output_is_a_sequence_diagram_with_folded_repeats_as_loops(ping_pong_trace):
    text = tracefmt.render(tracefmt.merge(tracefmt.load(str(ping_pong_trace))), mermaid=True)
    assert "```mermaid\nsequenceDiagram\n" in text
    assert "    participant p1 as PingProc [REQ]\n    participant p2 as PongProc [ROUTER]\n" in text
    assert "    p1->>p2: 1 'ping, [0], {}'\n    p2->>p1: 2 'pong, [0], {}'\n" in text
    assert "    loop x4\n        p1->>p2: 7 'hb, [], {}'\n        p2->>p1: 8 'hb, [], {}'\n    end\n" in text


def test_a_message_whose_receiver_was_not_traced_is_a_half_step_to_an_unknown_peer(tmp_path, req_router):
    req, _ = req_router
    rec = trace.Recorder(str(tmp_path), name="Lonely")
    rec.channel(req).sent([b'["hello", [], {}]'])
    rec.close()
    text = tracefmt.render(tracefmt.merge(tracefmt.load(str(tmp_path))))
    assert "[?]" in text and "    1 OUT: (not traced)" in text


def test_loading_a_directory_without_traces_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trace files"):
        tracefmt.load(str(tmp_path))


# ------------------------------------------------------------------ documented chains


def test_a_documented_chain_with_variables_matches_the_recorded_steps(ping_pong_trace):
    assert_chain(str(ping_pong_trace), PING_CHAIN)


def test_a_documented_chain_that_differs_from_the_wire_fails_with_a_diff(ping_pong_trace):
    wrong = PING_CHAIN.replace("'pong, [count], {}']\n    2 OUT", "'pong, [count, 1], {}']\n    2 OUT")
    with pytest.raises(AssertionError, match="not in the trace") as failure:
        assert_chain(str(ping_pong_trace), wrong)
    assert "-2 IN : [ping_id, '', 'pong, [count, 1], {}']" in str(failure.value)
    assert "+    2 IN : [peer-1, '', 'pong, [0], {}']" in str(failure.value)


def test_steps_the_caller_skips_may_come_between_the_steps_of_a_chain():
    client = tracefmt.Peer("client", "DEALER", key=(0, 1))
    server = tracefmt.Peer("server", "ROUTER", key=(1, 1))
    sid = b"\x00\x80\x00\x00\x01"

    def step(t, sender, receiver, sent, received):
        return tracefmt.Step(t, sender, receiver, [*sent], [*received])

    steps = [step(0.0, client, server, [b"ask"], [sid, b"ask"]),
             step(0.1, server, client, [sid, b"hb"], [b"hb"]),
             step(0.2, server, client, [sid, b"answer"], [b"answer"])]
    chain = """
        1 IN : [b'ask']
        1 OUT: [client_id, b'ask']

        2 IN : [client_id, b'answer']
        2 OUT: [b'answer']
    """
    with pytest.raises(AssertionError, match="not in the trace"):
        assert_chain(steps, chain)
    assert_chain(steps, chain, skip=lambda s: s.sent is not None and s.sent[-1] == b"hb")


def test_a_variable_must_stand_for_the_same_value_in_every_line_of_a_chain(ping_pong_trace):
    assert_chain(str(ping_pong_trace), PING_CHAIN.replace("[count]", "[n]"))  # any name will do
    # `ping_id` stands for peer-1 in the envelope, so it cannot also be the count 0.
    with pytest.raises(AssertionError):
        assert_chain(str(ping_pong_trace), PING_CHAIN.replace("'ping, [count], {}']\n    1 OUT",
                                                              "'ping, [ping_id], {}']\n    1 OUT"))


def test_a_documented_diagram_with_the_wrong_socket_fails(ping_pong_trace):
    with pytest.raises(AssertionError):
        assert_chain(str(ping_pong_trace), PING_CHAIN.replace("[ROUTER]", "[REP]"))


def test_chains_are_read_out_of_a_markdown_file_by_their_headings(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# App\n\n### Sending pings\n\n```\n{textwrap.dedent(PING_CHAIN)}```\n\n"
                      "### Other\n\n```console\n$ python x.py\n```\n")
    assert list(chains_in(readme)) == ["Sending pings"]
    assert "1 IN : ['ping, [count], {}']" in chains_in(readme)["Sending pings"]


# ------------------------------------------------------------------ the hooks in loops and streams


@pytest.fixture
def tracing(tmp_path):
    """Tracing on in this process for one test; the directory it writes to."""
    directory = tmp_path / "trace"
    trace.enable(directory)
    try:
        yield directory
    finally:
        trace.disable()


def records_in(directory):
    files = [tracefile.parse(p.read_bytes()) for p in sorted(directory.glob("*.pftrace"))]
    return [(f.sockets[r.channel]["type"], r.kind, r.frames) for f in files for r in f.records]


def test_with_tracing_off_a_stream_sends_on_the_plain_path(loop, ctx, monkeypatch):
    monkeypatch.setattr(trace, "_recorder", None)
    monkeypatch.setattr(trace, "_env_read", True)
    from pollframe.stream import Stream

    stream = Stream(ctx.socket(zmq.PUSH), loop)
    assert "send_multipart" not in vars(stream)  # the class's own method: nothing wrapped
    stream.close(linger=0)


def test_a_traced_loop_records_what_streams_send_and_registered_sockets_receive(tracing, loop_class, ctx):
    from pollframe.stream import Stream
    from pollframe.testing import run_until

    loop = loop_class()
    router = ctx.socket(zmq.ROUTER)
    router.bind("inproc://traced")
    dealer = Stream(ctx.socket(zmq.DEALER), loop)
    assert "send_multipart" in vars(dealer)
    dealer.socket.connect("inproc://traced")
    got, replies = [], []
    loop.register(router, lambda frames: (got.append(frames), router.send_multipart(frames[:1] + [b"pong"])))
    dealer.on_recv(replies.append)
    dealer.send_multipart([b"ping"])
    run_until(loop, lambda: replies)
    dealer.close(linger=0)
    loop.close()  # writes the trace out
    peer = got[0][0]
    assert records_in(tracing) == [
        ("DEALER", tracefile.SENT, [b"ping"]),
        ("ROUTER", tracefile.RECEIVED, [peer, b"ping"]),
        ("DEALER", tracefile.RECEIVED, [b"pong"]),  # a raw socket's own sends are not seen
    ]


def test_a_traced_loop_writes_its_trace_out_before_it_sleeps_in_a_poll(tracing, ctx, push_pull):
    push, pull = push_pull
    loop = PollLoop()
    try:
        got = []
        loop.register(pull, got.append)
        push.send(b"hello")
        loop.run_once(0)
        assert got == [[b"hello"]] and not list(tracing.glob("*.pftrace"))  # busy passes keep buffering
        loop.run_once(0.001)  # this pass may sleep: the buffer goes out first
        assert records_in(tracing) == [("PULL", tracefile.RECEIVED, [b"hello"])]
    finally:
        loop.close()


def test_a_message_recorded_by_its_sender_after_its_receipt_still_comes_before_the_reply():
    def file(name, pid, sock_type, records):
        return tracefile.TraceFile(tracefile.Header(name, pid, 0.0, "host"), {1: {"type": sock_type}},
                                   [tracefile.Record(kind, 1, t, frames) for kind, t, frames in records])

    ping = file("PingProc", 1, "REQ", [(tracefile.SENT, 1.002, [b'["ping", 1]']),  # recorded late
                                       (tracefile.RECEIVED, 1.003, [b'["pong", 1]'])])
    pong = file("PongProc", 2, "REP", [(tracefile.RECEIVED, 1.000, [b'["ping", 1]']),
                                       (tracefile.SENT, 1.001, [b'["pong", 1]'])])
    steps = tracefmt.merge([ping, pong])
    assert [(s.sender.process, s.receiver.process) for s in steps] == [("PingProc", "PongProc"),
                                                                       ("PongProc", "PingProc")]


def test_a_traced_stream_with_on_event_records_only_its_own_messages_and_no_monitor_events(
        tracing, loop_class, ctx):
    from pollframe.stream import Stream
    from pollframe.testing import run_until

    loop = loop_class()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = Stream(ctx.socket(zmq.DEALER), loop)
    events, replies = [], []
    dealer.on_event(events.append)
    dealer.on_recv(replies.append)
    loop.register(router, lambda frames: router.send_multipart(frames[:1] + [b"pong"]))
    dealer.socket.connect(f"tcp://127.0.0.1:{port}")
    dealer.send_multipart([b"ping"])
    run_until(loop, lambda: replies and any(e.name == "handshake_succeeded" for e in events))
    dealer.close(linger=0)
    loop.close()  # writes the trace out
    assert [(kind, sock_type) for sock_type, kind, _ in records_in(tracing)] == [
        (tracefile.SENT, "DEALER"), (tracefile.RECEIVED, "ROUTER"), (tracefile.RECEIVED, "DEALER")]
