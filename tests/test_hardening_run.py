"""The run side under failure: a full --out after the memory committed, a run stopped right
after its last commit (both finished by --resume, byte for byte), and config range checks."""

from __future__ import annotations

import errno
from pathlib import Path

import orjson
import pytest

from kit import make_config

from backtester.errors import BtError, MemoryStoreError
from backtester.finish import RunFolderError
from backtester.runner import run_backtest

OUTPUTS = ("metrics.json", "trades.parquet", "equity.parquet", "books.parquet",
           "prices.parquet")


CACHE: list[Path] = []  # one data cache for every run here (it is in the decision hash)


def _config(tmp_path: Path, name: str):
    return make_config(tmp_path / name, **{"run.start": "2025-01-01", "run.end": "2025-02-01",
                                           "run.chunk": "week",
                                           "data.cache_dir": str(CACHE[0])})


def _outputs(tmp_path: Path, name: str) -> dict[str, bytes]:
    folder = tmp_path / name / "runs" / "r1"
    return {f: (folder / f).read_bytes() for f in OUTPUTS}


def _memory(tmp_path: Path, name: str) -> dict[str, bytes]:
    folder = tmp_path / name / "memory"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("whole")
    CACHE[:] = [tmp / "cache"]
    run_backtest(_config(tmp, "whole"), run_id="r1")
    return tmp


def _active(tmp_path: Path, name: str) -> dict | None:
    return orjson.loads((tmp_path / name / "memory" / "manifest.json").read_bytes())["active_run"]


def test_disk_full_at_the_run_folder_is_one_line_and_resume_finishes(whole, tmp_path,
                                                                      monkeypatch):
    # Arrange: writing the run folder fails as on a full disk
    def full(result):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("backtester.finish.write_run", full)
    config = _config(tmp_path, "full")
    # Act
    with pytest.raises(RunFolderError) as caught:
        run_backtest(config, run_id="r1")
    # Assert: one line naming the folder, what was kept and the way back
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path / "full" / "runs" / "r1") in message
    assert "No space left on device" in message
    assert "committed up to chunk 2025-W05 (5 of 5 chunks)" in message
    assert "--resume" in message
    active = _active(tmp_path, "full")
    assert active["outputs_pending"] is True and active["chunks_done"] == 5
    # a plain run is refused (naming --resume); --resume finishes, trading nothing again
    monkeypatch.undo()
    with pytest.raises(MemoryStoreError, match="finish it with --resume"):
        run_backtest(config, run_id="r1")
    lines, stages = [], []
    run_backtest(config, resume=True, notice=lines.append,
                 progress=lambda chunk, stage: stages.append(stage))
    assert stages == [] and "already committed" in lines[-1]
    assert _active(tmp_path, "full") is None
    assert not (tmp_path / "full" / "runs" / "r1" / "chunks").exists()
    assert _outputs(tmp_path, "full") == _outputs(whole, "whole")
    assert _memory(tmp_path, "full") == _memory(whole, "whole")


def test_run_stopped_right_after_its_last_commit_is_finished_by_resume(whole, tmp_path,
                                                                        monkeypatch):
    # Arrange: the process ends between the last commit and the run folder
    def stop(*args, **kwargs):
        raise SystemExit(9)

    monkeypatch.setattr("backtester.finish.write_run", stop)
    config = _config(tmp_path, "stopped")
    with pytest.raises(SystemExit):
        run_backtest(config, run_id="r1")
    monkeypatch.undo()
    # Act
    result = run_backtest(config, resume=True)
    # Assert
    assert result.run_id == "r1" and len(result.chunks) == 5
    assert _outputs(tmp_path, "stopped") == _outputs(whole, "whole")
    assert _memory(tmp_path, "stopped") == _memory(whole, "whole")


def test_disk_full_while_writing_a_chunk_part_names_the_chunk_kept(whole, tmp_path,
                                                                    monkeypatch):
    # Arrange: the third chunk's part cannot be written
    import backtester.runner as runner

    written = []

    def part(run_dir, chunk, data):
        if chunk.index == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(chunk.index)
        return real(run_dir, chunk, data)

    real = runner.write_part
    monkeypatch.setattr(runner, "write_part", part)
    config = _config(tmp_path, "parts")
    # Act
    with pytest.raises(RunFolderError, match=r"committed up to chunk 2025-W02 \(2 of 5"):
        run_backtest(config, run_id="r1")
    # Assert: the chunk without its part was not committed; --resume ends as a whole run
    assert _active(tmp_path, "parts")["chunks_done"] == 2
    monkeypatch.undo()
    run_backtest(config, resume=True)
    assert _outputs(tmp_path, "parts") == _outputs(whole, "whole")
    assert _memory(tmp_path, "parts") == _memory(whole, "whole")


def test_run_folder_error_is_a_bt_error():
    assert issubclass(RunFolderError, BtError)


# --- range checks, config files, templates -----------------------------------------------


@pytest.mark.parametrize("key, value, words", [
    ("run.initial_cash", float("inf"), "run.initial_cash must be a positive finite"),
    ("run.initial_cash", 1e16, "run.initial_cash must be"),
    ("run.chunk", "9" * 30, "run.chunk must be"),
    ("execution.max_holding_bars", 10**30, "execution.max_holding_bars must be in [0, 10_000"),
    ("execution.max_open_positions", 2**63, "execution.max_open_positions must be"),
    ("execution.take_profit", float("inf"), "execution.take_profit must be"),
    ("ensemble.shadow_horizon", 10**12, "ensemble.shadow_horizon must be"),
    ("ensemble.seed", -1, "ensemble.seed must be"),
    ("memory.max_memory_size", 10**12, "memory.max_memory_size must be"),
    ("memory.k", 5000, "memory.k must be in [1, memory.max_memory_size = 1000]"),
    ("memory.min_neighbours", 10**12, "memory.min_neighbours must be"),
])
def test_absurd_sizes_are_refused_in_one_line(key, value, words):
    from backtester.config import load_config

    with pytest.raises(BtError) as caught:
        load_config(None, {key: value})
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_non_utf8_config_file_is_one_line(tmp_path):
    from backtester.config import load_config

    path = tmp_path / "latin1.toml"
    path.write_bytes("[run]\nout_dir = \"r\u00e9sultats\"\n".encode("latin-1"))
    with pytest.raises(BtError) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_template_outside_the_allowed_folders_is_refused_without_its_content(tmp_path,
                                                                           monkeypatch):
    from backtester.errors import ConfigError
    from backtester.providers.prompts import PromptTemplate

    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("TOP-SECRET-LINE\n[user]\n{symbol}\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for path in ("../outside/secret.txt", str(secret)):
        with pytest.raises(ConfigError) as caught:
            PromptTemplate.load(path)
        assert "outside the config's folder" in str(caught.value)
        assert "TOP-SECRET" not in str(caught.value)
    (work / "link.txt").symlink_to(secret)  # a link out of the folder is refused too
    with pytest.raises(ConfigError, match="outside the config's folder"):
        PromptTemplate.load("link.txt")
    # a path given explicitly is read; a malformed template never echoes its text
    with pytest.raises(ConfigError) as caught:
        PromptTemplate.load(str(secret), explicit=True)
    assert "line 1" in str(caught.value) and "TOP-SECRET" not in str(caught.value)
    (work / "ok.txt").write_text("[user]\n{symbol}\n")
    assert PromptTemplate.load("ok.txt").render({"symbol": "X"})[1]["content"] == "X"
    assert PromptTemplate.load("configs/prompts/default.txt").user


def test_a_config_reads_templates_from_its_own_folder_and_the_repos_configs_only(tmp_path,
                                                                                monkeypatch):
    # Arrange: a config received from someone else, in its own folder, and a secret file
    # in the working directory it is run from
    from backtester.config import load_config
    from backtester.errors import ConfigError
    from backtester.runner import build_providers

    received, work = tmp_path / "received", tmp_path / "work"
    received.mkdir()
    work.mkdir()
    (received / "mine.txt").write_text("[user]\n{symbol} {features}\n")
    (work / "secret.txt").write_text("API-KEY-123\n[user]\n{symbol}\n")
    monkeypatch.chdir(work)

    def config(template: str, **overrides):
        path = received / "run.toml"
        path.write_text(f"""
[providers.x]
kind = "llm"
base_url = "http://127.0.0.1:9/v1"
model = "m"
cache_mode = "replay"
prompt_template = "{template}"
""")
        return load_config(path, overrides)

    # Act / Assert: a template beside the config, or the repo's own, is read
    assert build_providers(config("mine.txt"))[-1].template.user.startswith("{symbol}")
    assert build_providers(config("configs/prompts/default.txt"))[-1].template.user
    # the working directory's file is not the config's to read, nor a path out of its folder
    for template in ("secret.txt", str(work / "secret.txt"), "../work/secret.txt"):
        with pytest.raises(ConfigError) as caught:
            build_providers(config(template))
        assert "outside the config's folder" in str(caught.value)
        assert "API-KEY" not in str(caught.value)
    # ... unless the user names it on the command line (--set) or through the API; and a
    # table missing a required key is one line
    path = received / "run.toml"
    path.write_text('[providers.x]\nkind = "llm"\nmodel = "m"\n')
    with pytest.raises(ConfigError, match=r"providers.x.base_url is required") as caught:
        load_config(path)
    assert "\n" not in str(caught.value)
    (work / "chosen.txt").write_text("[user]\n{symbol}\n")
    given = config("mine.txt", **{"providers.x.prompt_template": str(work / "chosen.txt")})
    assert build_providers(given)[-1].template.user == "{symbol}"
