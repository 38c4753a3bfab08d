"""The ``dynamo-sessions`` command line against moto's server and DynamoDB Local.

Commands run in-process (``cli.main([...])``) with ``--endpoint-url`` on loopback; a few run as
``python -m dynamo_sessions`` subprocesses, as cron would.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from dynamo_sessions import _core, cli
from dynamo_sessions.cli_config import COMMON, OptionError, resolve
from dynamo_sessions.testing.servers import free_port, local_client

from .handler_support import Faults

ENV_NAMES = ("DYNAMO_SESSIONS_TABLE_NAME", "DYNAMO_SESSIONS_ENDPOINT_URL", "DYNAMO_SESSIONS_CONFIG",
             "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_MAX_ATTEMPTS",
             "AWS_RETRY_MODE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials, no AWS config files, and none of our variables from the caller."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))


@pytest.fixture(params=["moto_server",
                        pytest.param("dynamodb_local", marks=pytest.mark.dynamodb_local)])
def endpoint(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param).endpoint_url
    return url


@pytest.fixture
def moto_endpoint(moto_server: Any) -> str:
    url: str = moto_server.endpoint_url
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def put(client: Any, table: str, prefix: str, count: int, expires: int, size: int) -> None:
    requests = [{"PutRequest": {"Item": {"id": {"S": f"PHPSESSID_{prefix}{i:03d}"},
                                         "data": {"B": b"x" * size},
                                         "expires": {"N": str(expires)}}}}
                for i in range(count)]
    for start in range(0, count, 25):
        pending = requests[start:start + 25]
        while pending:
            pending = client.batch_write_item(RequestItems={table: pending}).get(
                "UnprocessedItems", {}).get(table, [])


def count_items(client: Any, table: str) -> int:
    return sum(page["Count"] for page in client.get_paginator("scan").paginate(TableName=table))


# --- help and options -------------------------------------------------------------------------


@pytest.mark.parametrize("command", [None, *cli.COMMANDS])
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], command: str | None) -> None:
    code, out, _ = run(capsys, *([command] if command else []), "--help")
    assert code == 0
    assert "usage: dynamo-sessions" in out
    if command:
        for option in ("--table-name", "--endpoint-url", "--region-name", "--profile",
                       "--config"):
            assert option in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "gc", "--gc-batch-size", "26")[0] == 2
    assert run(capsys, "gc", "--gc-mode", "fast")[0] == 2
    assert run(capsys, "no-such-command")[0] == 2
    code, _, err = run(capsys, "create-table", "--read-capacity", "5", "--endpoint-url",
                       "http://127.0.0.1:9")
    assert code == 2 and "--write-capacity" in err


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    commands = {name: command.options for name, command in cli.COMMANDS.items()}
    options = cli.COMMANDS["gc"].options
    path = tmp_path / "ops.toml"
    path.write_text('table-name = "from-file"\nregion_name = "eu-west-1"\n'
                    '[gc]\ngc-segments = 4\ngc_operation_delay_seconds = 0.5\n'
                    'max-wcu-per-second = 100\n'
                    '[stats]\nsample_size = 10\n')
    env = {"DYNAMO_SESSIONS_CONFIG": str(path), "DYNAMO_SESSIONS_TABLE_NAME": "from-env"}
    settings = resolve("gc", {"gc_segments": 2}, options, commands, env)
    assert settings.values["gc_segments"] == 2 and settings.sources["gc_segments"] == "flag"
    assert settings.table_name == "from-env"
    assert settings.region_name == "eu-west-1"
    assert settings.gc_operation_delay_seconds == 0.5 and settings.max_wcu_per_second == 100.0
    assert settings.gc_batch_size == 25 and settings.sources["gc_batch_size"] == "default"
    assert "sample_size" not in settings.values  # another command's section
    settings = resolve("gc", {"table_name": "from-flag"}, options, commands,
                       {**env, "AWS_REGION": "us-west-2"})
    assert (settings.table_name, settings.region_name) == ("from-flag", "us-west-2")
    json_path = tmp_path / "ops.json"
    json_path.write_text(json.dumps({"table_name": "json-table", "gc": {"gc_mode": "batch"}}))
    settings = resolve("gc", {"config": str(json_path)}, options, commands, {})
    assert (settings.table_name, settings.gc_mode) == ("json-table", "batch")


@pytest.mark.parametrize(("content", "message"), [
    ('table_nam = "x"\n', "unknown key 'table_nam'"),
    ('[gc]\nsegmnts = 2\n', "unknown key 'segmnts' in [gc]"),
    ('[gc]\ngc_segments = "two"\n', "expected int"),
    ('[gc]\ngc_batch_size = 30\n', "must be <= 25"),
    ('[gc]\ngc_mode = "fast"\n', "not one of"),
    ('[gc]\nyes = true\n', "unknown key 'yes'"),
    ('[delete-table]\nyes = true\n', "unknown key 'yes'"),
    ("not toml = = 1\n", "not valid TOML"),
])
def test_bad_config_files_are_rejected(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                       content: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    code, _, err = run(capsys, "gc", "--config", str(path), "--endpoint-url",
                       "http://127.0.0.1:9")
    assert code == 2
    assert message in err


def test_config_file_needs_a_known_suffix(tmp_path: Path) -> None:
    path = tmp_path / "ops.ini"
    path.write_text("x")
    with pytest.raises(OptionError, match=r"\*\.toml or \*\.json"):
        resolve("gc", {"config": str(path)}, cli.COMMANDS["gc"].options,
                {name: c.options for name, c in cli.COMMANDS.items()}, {})
    assert {option.dest for option in COMMON} >= {"table_name", "endpoint_url", "region_name",
                                                 "profile"}



def _all_options() -> list[tuple[str, Any]]:
    """(command, option) for every option of every command, the common ones included."""
    return [(name, option) for name, command in cli.COMMANDS.items()
            for option in (*COMMON, *command.options)]


def _help_texts(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    texts = {}
    for command in (None, *cli.COMMANDS):
        code, out, _ = run(capsys, *([command] if command else []), "--help")
        assert code == 0
        texts[command or "(top)"] = out
    return texts


def test_help_shows_no_markup_and_no_module_names(capsys: pytest.CaptureFixture[str]) -> None:
    """--help is for people: no reStructuredText roles or literals, no internal module names."""
    import pkgutil

    import dynamo_sessions

    modules = [module.name for module in pkgutil.iter_modules(dynamo_sessions.__path__)
               if "_" in module.name]  # cli_config, _core_py, ...: never a word of the help
    assert "cli_config" in modules
    for command, text in _help_texts(capsys).items():
        for markup in ("``", ":class:", ":func:", ":meth:", ":mod:", "dynamo_sessions.",
                       *modules):
            assert markup not in text, f"{command} --help shows {markup!r}"


def test_flags_are_session_options_or_command_only() -> None:
    """A flag that sets a SessionConfig option has its name; every other flag is listed as a
    command-only flag (and no such flag hides a SessionConfig name)."""
    from dynamo_sessions import SessionConfig

    names = set(SessionConfig.option_names())
    assert not cli.COMMAND_ONLY & names
    used = {"config"}
    for command, option in _all_options():
        assert option.dest in names or option.dest in cli.COMMAND_ONLY, (command, option.flag)
        assert option.flag == "--" + option.dest.replace("_", "-")
        used.add(option.dest)
    assert used >= cli.COMMAND_ONLY, "COMMAND_ONLY lists flags no command has"


def test_one_flag_means_one_thing_in_every_command() -> None:
    """The same flag name is the same option wherever it appears (--mode was once the GC mode
    in gc and the locking mode in demo)."""
    by_flag: dict[str, list[tuple[str, Any]]] = {}
    for command, option in _all_options():
        for flag in (option.flag, *option.aliases):
            by_flag.setdefault(flag, []).append((command, option))
    for flag, uses in by_flag.items():
        first = uses[0][1]
        for command, option in uses:
            assert option == first, f"{flag} in {command} differs from {uses[0][0]}"


def _other_value(option: Any) -> Any:
    """A valid value of the option that is not its default."""
    if option.choices:
        return next(choice for choice in option.choices if choice != option.default)
    if option.kind is bool:
        return not option.default
    if option.kind is int:
        return (option.default or 1) + (-1 if option.default == option.maximum else 1)
    if option.kind is float:
        return (option.default or 0.0) + 0.5
    return "http://127.0.0.1:9" if option.dest == "endpoint_url" else f"other-{option.dest}"


@pytest.mark.parametrize("command", [name for name in cli.COMMANDS if name != "demo"])
def test_every_session_option_of_the_config_file_reaches_the_store(
        tmp_path: Path, command: str) -> None:
    """Each SessionConfig option a command takes, set in the config file, is in the
    SessionConfig the command hands the store (not only table_name and hash_key)."""
    from dynamo_sessions import SessionConfig

    names = set(SessionConfig.option_names())
    options = cli.COMMANDS[command].options
    common = {o.dest: _other_value(o) for o in COMMON if o.dest in names and o.in_file}
    own = {o.dest: _other_value(o) for o in options if o.dest in names and o.in_file}
    path = tmp_path / "ops.json"
    path.write_text(json.dumps({**common, command: own}))
    settings = resolve(command, {"config": str(path)}, options,
                       {name: c.options for name, c in cli.COMMANDS.items()}, {})
    config = cli.session_config(settings)
    for dest, value in {**common, **own}.items():
        assert getattr(config, dest) == value, dest
    assert {"table_name", "endpoint_url", "region_name"} <= set(common)


_OTHER_TEXT = {"locking": "optimistic", "lock_retry_mode": "uniform", "gc_mode": "batch",
               "hash_key": "pk"}


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_session_option_may_be_set_in_the_config_file(tmp_path: Path,
                                                             command: str) -> None:
    """Every SessionConfig option a file can hold (all but the client and the callback) is a
    top-level key of the config file, and reaches the command's SessionConfig."""
    from dynamo_sessions import SessionConfig
    from dynamo_sessions.cli.options import FILE_ONLY

    defaults = SessionConfig()
    values: dict[str, Any] = {}
    for option in FILE_ONLY:
        default = getattr(defaults, option.dest)
        values[option.dest] = (not default if isinstance(default, bool)
                               else _OTHER_TEXT[option.dest] if isinstance(default, str)
                               else default + 1)
    values.update(expiry_refresh_fraction=0.75, gc_batch_size=10)  # inside their ranges
    path = tmp_path / "ops.json"
    path.write_text(json.dumps(values))
    options = cli.COMMANDS[command].options
    settings = resolve(command, {"config": str(path)}, options,
                       {name: c.options for name, c in cli.COMMANDS.items()}, {})
    config = cli.session_config(settings)
    declared = {option.dest: option for option in options}
    for name, value in values.items():
        if name in declared and settings.sources[name] != "default":
            continue
        assert getattr(config, name) == value, name
    assert set(values) | {o.dest for o in COMMON} >= set(SessionConfig.option_names()) - {
        "client", "on_operation", "profile_name"}


def test_options_of_the_config_file_reach_the_gc_and_its_client(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        moto_endpoint: str, table_name: str) -> None:
    """The store options, the client's timeouts and retries, set in the config file, are those
    of the collector and of the client the command builds (not only table_name and
    hash_key)."""
    from dynamo_sessions.ops import gc

    path = tmp_path / "ops.toml"
    path.write_text(f'table_name = "{table_name}"\nendpoint_url = "{moto_endpoint}"\n'
                    "lock_lease_seconds = 3.5\nclock_skew_warning_seconds = 9\n"
                    "read_timeout_seconds = 12.5\nconnect_timeout_seconds = 1.5\n"
                    'boto_max_attempts = 2\nboto_retry_mode = "adaptive"\n'
                    '[gc]\ngc_mode = "batch"\n')
    assert run(capsys, "create-table", "--config", str(path))[0] == 0
    made, seen = cli.make_client, []
    collected = gc.GarbageCollector.run

    def client(*args: Any, **kwargs: Any) -> Any:
        seen.append(made(*args, **kwargs))
        return seen[-1]

    def run_gc(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(self.config)
        return collected(self, *args, **kwargs)

    monkeypatch.setattr(cli, "make_client", client)
    monkeypatch.setattr(gc.GarbageCollector, "run", run_gc)
    assert run(capsys, "gc", "--config", str(path))[0] == 0
    made_client, config = seen
    assert (config.table_name, config.gc_mode, config.lock_lease_seconds,
            config.clock_skew_warning_seconds) == (table_name, "batch", 3.5, 9.0)
    botocore_config = made_client.meta.config
    assert (botocore_config.read_timeout, botocore_config.connect_timeout) == (12.5, 1.5)
    assert botocore_config.retries == {"mode": "adaptive", "total_max_attempts": 2}
    assert made_client.meta.endpoint_url == moto_endpoint


def test_gc_takes_its_mode_and_segments_from_the_config_file(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, moto_endpoint: str,
        table_name: str) -> None:
    path = tmp_path / "ops.json"
    path.write_text(json.dumps({"table_name": table_name, "endpoint_url": moto_endpoint,
                                "gc": {"gc_mode": "batch", "gc_segments": 2}}))
    assert run(capsys, "create-table", "--config", str(path))[0] == 0
    code, out, _ = run(capsys, "gc", "--config", str(path))
    assert code == 0 and "(batch, 2 segments)" in out


def test_server_extra_brings_what_demo_serve_needs() -> None:
    """The demo's install command (the server extra) must bring Flask and gunicorn too."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    server = project["project"]["optional-dependencies"]["server"]
    names = {requirement.split("[")[0].split(">")[0].split("=")[0].strip().lower()
             for requirement in server}
    assert {"moto", "flask", "gunicorn"} <= names


def test_demo_serve_runs_one_locking_mode(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "demo", "--serve", "--locking", "none", "--locking",
                       "optimistic")
    assert code == 2 and "one locking mode" in err


# --- the commands, end to end ------------------------------------------------------------------


def test_table_lifecycle_and_gc(capsys: pytest.CaptureFixture[str], endpoint: str,
                                table_name: str) -> None:
    common = ("--endpoint-url", endpoint, "--table-name", table_name)
    code, out, _ = run(capsys, "create-table", *common)
    assert code == 0 and "ACTIVE" in out and "on demand" in out
    code, _, err = run(capsys, "create-table", *common)
    assert code == 7 and "already exists" in err
    code, out, _ = run(capsys, "describe", *common, "--json")
    described = json.loads(out)
    assert (described["status"], described["billing_mode"]) == ("ACTIVE", "PAY_PER_REQUEST")
    assert (described["ttl_status"], described["ttl_attribute"]) == ("ENABLED", "expires")
    code, out, _ = run(capsys, "describe", *common)
    assert code == 0 and "TTL" in out and "items" in out

    client = local_client(endpoint)
    # expired far enough in the past for the test, but DynamoDB Local's TTL sweeper may take
    # some: gc counts are checked against what is left, not against the numbers put
    put(client, table_name, "old", 40, int(time.time()) - 5, 200)
    put(client, table_name, "new", 10, int(time.time()) + 600, 200)
    code, out, _ = run(capsys, "gc", *common, "--dry-run", "--json")
    dry = json.loads(out)
    assert code == 0 and dry["deleted"] == 0 and dry["dry_run"]
    code, out, err = run(capsys, "gc", *common, "--gc-segments", "2", "--gc-batch-size", "5")
    assert code == 0 and err == ""
    assert out.count("\n") == 1 and out.startswith(f"gc {table_name}: scanned")
    assert count_items(client, table_name) == 10
    code, out, _ = run(capsys, "gc", *common, "--json", "--gc-mode", "batch")
    assert json.loads(out)["deleted"] == 0

    code, _, err = run(capsys, "delete-table", *common)
    assert code == 2 and "without --yes" in err
    code, out, _ = run(capsys, "delete-table", *common, "--yes")
    assert code == 0 and "deleted" in out
    for command in ("describe", "gc", "stats", "delete-table"):
        code, _, err = run(capsys, command, *common, "--yes" if command == "delete-table" else
                           "--json")
        assert code == 3, command
        assert f"create-table --table-name {table_name}" in err
        assert "Traceback" not in err


def test_create_table_provisioned(capsys: pytest.CaptureFixture[str], moto_endpoint: str,
                                  table_name: str) -> None:
    code, out, _ = run(capsys, "create-table", "--endpoint-url", moto_endpoint, "--table-name",
                       table_name, "--read-capacity", "5", "--write-capacity", "5", "--json")
    assert code == 0
    described = json.loads(out)
    assert described["billing_mode"] == "PROVISIONED"
    assert (described["read_capacity"], described["write_capacity"]) == (5, 5)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "code"), [("nope\n", 1), ("{name}\n", 0)])
def test_delete_table_asks_on_a_terminal(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch, moto_endpoint: str,
                                         table_name: str, answer: str, code: int) -> None:
    common = ("--endpoint-url", moto_endpoint, "--table-name", table_name)
    assert run(capsys, "create-table", *common)[0] == 0
    monkeypatch.setattr(sys, "stdin", Terminal(answer.format(name=table_name)))
    result, _, err = run(capsys, "delete-table", *common)
    assert result == code
    assert "Type the table name to confirm" in err
    assert run(capsys, "describe", *common)[0] == (3 if code == 0 else 0)


def test_stats(capsys: pytest.CaptureFixture[str], endpoint: str, table_name: str) -> None:
    common = ("--endpoint-url", endpoint, "--table-name", table_name)
    assert run(capsys, "create-table", *common)[0] == 0
    client = local_client(endpoint)
    put(client, table_name, "small", 30, int(time.time()) + 600, 300)
    put(client, table_name, "large", 10, int(time.time()) + 600, 3000)
    code, out, _ = run(capsys, "stats", *common, "--json", "--sample-size", "25")
    stats = json.loads(out)
    assert code == 0
    assert stats["sampled"] == 25 and not stats["complete"]
    code, out, _ = run(capsys, "stats", *common, "--json", "--changed-share", "0.5")
    stats = json.loads(out)
    small = _core.item_size({"id": {"S": "PHPSESSID_small000"}, "data": {"B": b"x" * 300},
                             "expires": {"N": str(int(time.time()) + 600)}})
    sizes = stats["size_bytes"]
    assert stats["sampled"] == 40 and stats["complete"]
    assert sizes["over_1kb_share"] == 0.25
    assert sizes["min"] == small and sizes["p50"] == small
    assert sizes["max"] == small - 300 + 3000
    modes = {row["mode"]: row for row in stats["modes"]}
    assert set(modes) == {"none", "optimistic", "pessimistic", "php-none", "php-pessimistic"}
    # none: 1 RCU per read (all items < 4 KB); a write costs 1 WCU (small) or 3 WCU (3 KB)
    assert modes["none"]["read_rcu"] == 1.0
    assert modes["none"]["changed_write_wcu"] == (30 * 1 + 10 * 3) / 40
    assert modes["none"]["wcu_per_1m_requests"] == pytest.approx(0.5 * 1.5 * 1_000_000)
    assert modes["php-none"]["wcu_per_1m_requests"] == pytest.approx(1.5 * 1_000_000)
    assert modes["pessimistic"]["rcu_per_request"] == 0.0
    code, out, _ = run(capsys, "stats", *common, "--no-consistent-read")
    assert code == 0
    assert "over 1 KB: 25.0% of sessions" in out
    assert "p50" in out and "php-none" in out and "eventually consistent" in out


# --- errors that tell the user what to do -------------------------------------------------------


def test_no_credentials(capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    # signing fails before anything is sent; the endpoint is a closed loopback port anyway
    code, _, err = run(capsys, "describe", "--endpoint-url", f"http://127.0.0.1:{free_port()}")
    assert code == 4
    assert "AWS_ACCESS_KEY_ID" in err and "--profile" in err and "Traceback" not in err


def test_unknown_profile(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "describe", "--profile", "nope", "--endpoint-url",
                       "http://127.0.0.1:9")
    assert code == 4 and "nope" in err


def test_unreachable_endpoint(capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run(capsys, "describe", "--endpoint-url", url)
    assert code == 6
    assert url in err and "--endpoint-url" in err and "Traceback" not in err


def test_throttled(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                   moto_endpoint: str, table_name: str) -> None:
    common = ("--endpoint-url", moto_endpoint, "--table-name", table_name)
    assert run(capsys, "create-table", *common)[0] == 0
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    made = cli.make_client

    def throttled_client(*args: Any, **kwargs: Any) -> Any:
        client = made(*args, **kwargs)
        Faults(client).add("throttle", "Scan", 10)
        return client

    monkeypatch.setattr(cli, "make_client", throttled_client)
    code, _, err = run(capsys, "gc", *common)
    assert code == 5
    assert "--max-wcu-per-second" in err and "--gc-operation-delay-seconds" in err


# --- gc interrupted and re-run, progress bar ---------------------------------------------------


def test_gc_progress_bar_then_ctrl_c_then_rerun(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch, endpoint: str,
                                               table_name: str) -> None:
    from dynamo_sessions.cli import progress

    common = ("--endpoint-url", endpoint, "--table-name", table_name)
    assert run(capsys, "create-table", *common)[0] == 0
    client = local_client(endpoint)
    client.update_time_to_live(TableName=table_name, TimeToLiveSpecification={
        "Enabled": False, "AttributeName": "expires"})  # DynamoDB Local's TTL would race gc
    put(client, table_name, "old", 60, int(time.time()) - 5, 100)
    put(client, table_name, "new", 15, int(time.time()) + 600, 100)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    draw = progress.GcProgress.update
    seen: list[int] = []

    def ctrl_c_after_some(self: progress.GcProgress, result: Any, force: bool = False,
                          done: bool = False) -> None:
        draw(self, result, force=True, done=done)
        seen.append(result.deleted)
        if result.deleted >= 10 and not force:
            raise KeyboardInterrupt

    monkeypatch.setattr(progress.GcProgress, "update", ctrl_c_after_some)
    code, out, err = run(capsys, "gc", *common, "--gc-batch-size", "5")
    assert code == 130
    assert "\r[" in err and "scanned" in err and "deleted" in err  # the bar was drawn
    assert "gc interrupted" in err and "run the same gc again" in err
    left = count_items(client, table_name)
    assert 15 < left <= 65
    monkeypatch.setattr(progress.GcProgress, "update", draw)
    code, out, err = run(capsys, "gc", *common)
    assert code == 0 and f"deleted {left - 15}" in out
    assert count_items(client, table_name) == 15


@pytest.mark.slow
@pytest.mark.dynamodb_local
def test_gc_subprocess_sigint_then_rerun(dynamodb_local: Any, table_name: str) -> None:
    """``python -m dynamo_sessions gc`` from cron, stopped by SIGINT (Ctrl-C), then re-run."""
    endpoint = dynamodb_local.endpoint_url
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
           "DYNAMO_SESSIONS_ENDPOINT_URL": endpoint, "DYNAMO_SESSIONS_TABLE_NAME": table_name}
    command = [sys.executable, "-m", "dynamo_sessions"]
    created = subprocess.run([*command, "create-table"], env=env, capture_output=True,
                             text=True, timeout=60, check=False)
    assert created.returncode == 0, created.stderr
    client = local_client(endpoint)
    client.update_time_to_live(TableName=table_name, TimeToLiveSpecification={
        "Enabled": False, "AttributeName": "expires"})
    put(client, table_name, "old", 300, int(time.time()) - 5, 100)
    put(client, table_name, "new", 20, int(time.time()) + 600, 100)
    gc = subprocess.Popen([*command, "gc", "--gc-batch-size", "1",
                           "--gc-operation-delay-seconds", "0.05"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while count_items(client, table_name) == 320 and time.monotonic() < deadline:
        time.sleep(0.1)
    gc.send_signal(signal.SIGINT)
    _, err = gc.communicate(timeout=60)
    assert gc.returncode == 130, err
    assert "gc interrupted" in err and "Traceback" not in err
    assert 20 < count_items(client, table_name) < 320
    rerun = subprocess.run([*command, "gc"], env=env, capture_output=True, text=True,
                           timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.count("\n") == 1  # one summary line off a terminal
    assert count_items(client, table_name) == 20


def test_python_dash_m(moto_endpoint: str, table_name: str) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
    result = subprocess.run(
        [sys.executable, "-m", "dynamo_sessions", "describe", "--endpoint-url", moto_endpoint,
         "--table-name", table_name], env=env, capture_output=True, text=True, timeout=60,
        check=False)
    assert result.returncode == 3
    assert "create-table" in result.stderr and "Traceback" not in result.stderr


# --- demo -------------------------------------------------------------------------------------


def test_demo_runs_and_prints_json(capsys: pytest.CaptureFixture[str],
                                   moto_endpoint: str) -> None:
    code, out, _ = run(capsys, "demo", "--users", "1", "--requests", "2", "--tabs", "2",
                       "--locking", "none", "--locking", "optimistic", "--json", "--endpoint-url",
                       moto_endpoint)
    assert code == 0
    assert [row["mode"] for row in json.loads(out)] == ["none", "optimistic"]


def test_the_config_files_options_reach_the_demos_stores(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        moto_endpoint: str) -> None:
    from dynamo_sessions.demo import workload

    path = tmp_path / "ops.json"
    path.write_text(json.dumps({"max_write_retries": 3, "read_timeout_seconds": 11.0,
                                "demo": {"locking": ["optimistic"]}}))
    seen: list[Any] = []
    run_mode = workload.run_mode

    def recorded(client: Any, mode: str, *args: Any) -> Any:
        seen.append((client.meta.config.read_timeout, mode, args[-1]))
        return run_mode(client, mode, *args)

    monkeypatch.setattr(workload, "run_mode", recorded)
    code, _, _ = run(capsys, "demo", "--users", "1", "--requests", "1", "--tabs", "0",
                     "--config", str(path), "--endpoint-url", moto_endpoint)
    assert code == 0
    ((read_timeout, mode, base),) = seen
    assert (read_timeout, mode) == (11.0, "optimistic")
    assert (base.max_write_retries, base.read_timeout_seconds) == (3, 11.0)


def test_demo_serve_without_the_web_demo(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dynamo_sessions.demo.web", None)  # import fails
    code, _, err = run(capsys, "demo", "--serve")
    assert code == 1 and "dynamo-sessions[server]" in err and "Traceback" not in err


@pytest.mark.parametrize("server", [None, "gunicorn", "uvicorn"])
def test_demo_serve_passes_its_options(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch,
                                       server: str | None) -> None:
    calls: list[tuple[Any, ...]] = []
    module = types.ModuleType("dynamo_sessions.demo.web")

    def serve(endpoint_url: str | None, host: str = "127.0.0.1", port: int = 8000,
              workers: int = 2, threads: int = 4, locking: str = "optimistic",
              max_lock_wait_seconds: float = 2.0, server: str = "gunicorn") -> int:
        calls.append((endpoint_url, host, port, workers, threads, locking,
                      max_lock_wait_seconds, server))
        return 0

    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dynamo_sessions.demo.web", module)
    code, _, _ = run(capsys, "demo", "--serve", "--port", "8123", "--workers", "3",
                     "--threads", "2", "--locking", "pessimistic", "--max-lock-wait-seconds",
                     "0.5", "--endpoint-url", "http://127.0.0.1:9",
                     *(() if server is None else ("--server", server)))
    assert code == 0
    assert calls == [("http://127.0.0.1:9", "127.0.0.1", 8123, 3, 2, "pessimistic", 0.5,
                      server or "gunicorn")]


def test_progress_bar_counts_pending_deletes_as_not_done() -> None:
    from dynamo_sessions.cli.progress import GcProgress
    from dynamo_sessions.table import GcResult

    stream = io.StringIO()
    bar = GcProgress(stream, item_count=100, monotonic=lambda: 0.0)
    result = GcResult(scanned=100, expired=50, deleted=10, skipped=0)
    assert bar.line(result).startswith("[############........]  60%")
    assert "[####################] 100%" in bar.line(result, done=True)
    assert "to delete 50" in bar.line(GcResult(scanned=100, expired=50, dry_run=True))
    bar.update(result)
    bar.update(result)  # within the redraw interval: skipped
    bar.finish()
    assert stream.getvalue().count("\r") == 1 and stream.getvalue().endswith("\n")


@pytest.mark.dynamodb_local
def test_stats_projection_matches_what_dynamodb_local_charges(dynamodb_local: Any,
                                                              table_name: str) -> None:
    """The per-operation units ``stats`` projects are what each mode really spends."""
    from dynamo_sessions import SessionConfig, create_store, new_session_id
    from dynamo_sessions.stats import project, sample_table
    from dynamo_sessions.table import create_table

    client = local_client(dynamodb_local.endpoint_url)
    config = SessionConfig(table_name=table_name)
    create_table(client, config, enable_ttl=False)
    ids = [new_session_id() for _ in range(6)]
    plain = create_store(config, client)
    for index, session_id in enumerate(ids):  # incompressible, away from KB boundaries
        plain.save(plain.load(session_id), {"blob": os.urandom(300 if index % 2 else 2500),
                                            "n": 1})
    projected = {cost.mode: cost for cost in project(sample_table(client, config).sizes)}

    def measured(mode: str, change: bool) -> tuple[float, float, float]:
        """Mean (load RCU, load WCU, save WCU) over the sessions, as DynamoDB Local reported."""
        store = create_store(config.replace(locking=mode), client)
        load_rcu = load_wcu = save_wcu = 0.0
        for session_id in ids:
            before = (store.metrics.read_units, store.metrics.write_units)
            session = store.load(session_id)
            load_rcu += store.metrics.read_units - before[0]
            load_wcu += store.metrics.write_units - before[1]
            before_save = store.metrics.write_units
            store.save(session, {**session.data, "n": session.data["n"] + int(change)})
            save_wcu += store.metrics.write_units - before_save
        return load_rcu / len(ids), load_wcu / len(ids), save_wcu / len(ids)

    none = projected["none"]
    assert measured("none", change=True) == (none.read_rcu, 0.0, none.changed_write_wcu)
    lock = projected["pessimistic"]
    assert measured("pessimistic", change=False) == (0.0, lock.read_wcu,
                                                     lock.unchanged_write_wcu)
    assert measured("pessimistic", change=True) == (0.0, lock.read_wcu, lock.changed_write_wcu)
    versioned = projected["optimistic"]
    assert measured("optimistic", change=True) == (versioned.read_rcu, 0.0,
                                                   versioned.changed_write_wcu)
    assert none.changed_write_wcu == 2.0  # (1 + 3) / 2: not a flat 1 per write
