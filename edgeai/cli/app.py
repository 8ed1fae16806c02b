"""The typer application and the error contract every command shares.

Exit codes: 0 success, 1 a failed check (parity out of tolerance, a regression), 2 bad usage or bad
input, 130 interrupted. Every failure is one ``error: ...`` line on stderr; ``--debug`` (anywhere on
the command line) shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
import warnings
from collections.abc import Callable
from typing import Annotated, Any

import typer

from edgeai import __version__
from edgeai.errors import EdgeAIError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Export PyTorch models to ONNX, quantize, run on ONNX Runtime / OpenVINO, check parity, bench.")
state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeai {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors (also accepted after the "
                                        "command).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print edgeai's version and exit.")] = False,
) -> None:
    state["debug"] = state["debug"] or debug


_SHOWN: set[str] = set()  # warnings already printed by this process: each is said once


def echo_warning(text: str) -> None:
    """A warning is one ``warning:`` line on stderr, without edgeai's own ``edgeai:`` prefix, once.

    The "once" filters are not enough alone: a library that adds a warnings filter while a command
    runs (several do, on import) resets Python's record of what was shown.
    """
    line = f"warning: {text[len('edgeai: '):] if text.startswith('edgeai: ') else text}"
    if line in _SHOWN:
        return
    _SHOWN.add(line)
    typer.echo(line, err=True)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    echo_warning(str(message))


# Options that name what a command writes ("-o" etc.), and options that name neither an input nor an output.
OUTPUT_OPTIONS = {"output": "-o", "out": "--out", "plot": "--plot", "csv": "--csv", "markdown": "--markdown"}
_NOT_INPUTS = {"cache_dir", "json_out", "device"}


def _declared_inputs(kwargs: dict[str, Any]) -> list[str]:
    """Paths named by a command's arguments that exist: what the command will read."""
    found = []
    for name, value in kwargs.items():
        if name in OUTPUT_OPTIONS or name in _NOT_INPUTS or value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(item, (str, os.PathLike)):
                continue
            text = os.fspath(item)
            if name == "input" and "=" in text:  # run --input NAME=file.npy
                text = text.partition("=")[2]
            try:
                if text and "\0" not in text and os.path.lexists(text):
                    found.append(text)
            except (OSError, ValueError):
                continue
    return found


# What -o/--out names, per command: deploy and demo write folders, export a file or (seq2seq) a folder.
_OUTPUT_KINDS = {"deploy": "folder", "demo": "folder", "export": "any"}


def guard_outputs(kwargs: dict[str, Any], command: str = "") -> None:
    """Note every input a command names (bundles as folders, models with their external data), then
    refuse any output option that would overwrite one: before any work, not after it."""
    from edgeai.atomic import check_destination
    from edgeai.bundle import is_bundle
    from edgeai.errors import ModelLoadError
    from edgeai.onnxfile import load_proto
    from edgeai.readset import check_output, note_read

    for path in _declared_inputs(kwargs):
        if is_bundle(path):
            note_read(path, tree=True)
            continue
        note_read(path)
        if path.endswith(".onnx") and os.path.isfile(path):
            with contextlib.suppress(ModelLoadError):  # notes its external data; a bad file is the command's to report
                load_proto(path)
    for name, flag in OUTPUT_OPTIONS.items():
        value = kwargs.get(name)
        if isinstance(value, (str, os.PathLike)):
            check_output(value, flag)
            kind = _OUTPUT_KINDS.get(command, "file") if name in ("output", "out") else "file"
            check_destination(value, kind=kind)


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn EdgeAIErrors into one clear line on stderr and the documented exit code.

    The command runs inside one read set (:mod:`edgeai.readset`): its inputs are noted first and
    no output may overwrite one. OS failures that reach here (a name too long, a permission, a
    full disk) are reported the same way, as ``FileAccessError``.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from edgeai import readset, report

        report.set_quiet(bool(kwargs.get("json_out")))
        try:
            with warnings.catch_warnings(), readset.scope():
                guard_outputs(kwargs, fn.__name__)
                if not state["debug"]:  # one 'warning:' line, not Python's file:line + source echo
                    warnings.showwarning = _show_warning
                warnings.simplefilter("default" if state["debug"] else "ignore")
                warnings.filterwarnings("once", message="edgeai:.*")
                warnings.filterwarnings("once", message="calibrating on random.*")
                return fn(*args, **kwargs)
        except (OSError, MemoryError, RecursionError) as e:
            if state["debug"]:
                raise
            err = as_edgeai_error(e)
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None
        except EdgeAIError as e:
            if state["debug"]:
                raise
            typer.echo(f"error: {' '.join(str(e).split())}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def as_edgeai_error(e: BaseException) -> EdgeAIError:
    """An OS-level failure (or exhausted memory) as the typed error a user can act on."""
    from edgeai.errors import FileAccessError

    if isinstance(e, MemoryError):
        return EdgeAIError("out of memory; use a smaller batch, fewer samples or a smaller model")
    if isinstance(e, RecursionError):
        return EdgeAIError("input nested too deeply to process")
    where = f"{e.filename}: " if getattr(e, "filename", None) else ""
    return FileAccessError(f"{where}{getattr(e, 'strerror', None) or e}")


def fail(message: str, code: int = 1) -> None:
    """End a command with one ``error:`` line and an exit code (1: a failed check)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def print_json(obj: Any) -> None:
    from edgeai.report import to_json

    typer.echo(to_json(obj))


def _click_errors() -> tuple[type, ...]:
    """click's exception base, from the copy typer vendors (typer >= 0.20) or from click itself."""
    found = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(name).ClickException)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _take_debug(argv: list[str]) -> list[str]:
    """``--debug`` is a global flag; accept it after the command too (``edgeai run m.onnx --debug``)."""
    head, sep, tail = argv, [], []
    if "--" in argv:
        i = argv.index("--")
        head, sep, tail = argv[:i], ["--"], argv[i + 1:]
    if "--debug" in head[1:]:
        state["debug"] = True
        head = [head[0], *(a for a in head[1:] if a != "--debug")]
    return [*head, *sep, *tail]


def main(argv: list[str] | None = None) -> None:
    args = _take_debug(list(sys.argv if argv is None else argv))
    try:
        code = app(args=args[1:], prog_name="edgeai", standalone_mode=False)
    except _click_errors() as e:  # bad option values, unknown options, missing arguments
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            # click would print a usage block and a framed box; the contract is one line on stderr.
            where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(f"error: {' '.join(e.format_message().split())}{where}", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # a bug: one line unless --debug
        if state["debug"]:
            raise
        typer.echo(f"error: unexpected {type(e).__name__}: {e} (this is a bug in edgeai; rerun with --debug for the "
                   "traceback)", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
