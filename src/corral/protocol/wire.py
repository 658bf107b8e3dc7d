"""The plain-data half of the wire protocol: framing, limits and input rules.

Stdlib only. Both ends import it: the host through :mod:`corral.protocol`, the
agent inside the sandbox directly (it must run on any Python >= 3.9, with
nothing installed). Everything here is a constant or a pure function. The
agent reads and writes frames with the codec here; the host uses pydantic's
JSON (:mod:`corral.protocol.messages`), which writes the same bytes, and falls
back to this codec for the frames pydantic cannot read or write (text holding
lone surrogates). Both refuse NaN and Infinity.

Framing: one JSON object per line, UTF-8, ``\\n``-terminated, at most
:data:`MAX_FRAME_BYTES` long. Every message has ``type``; every message that
belongs to an operation has ``id``. See ``docs/protocol.md``.
"""

from __future__ import annotations

try:  # CPython's C JSON codec, used directly: ``import json`` pulls in ``re`` and
    # ``enum``, about 5 ms of the agent's start-up, which is on every cold run.
    import _json
except ImportError:  # pragma: no cover - not CPython
    _json = None

PROTOCOL_VERSION = 3

#: Largest single frame either side accepts (a file chunk plus JSON overhead).
MAX_FRAME_BYTES = 24 * 1024 * 1024
#: Largest file the file API moves in one message.
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Largest program text accepted for one run.
MAX_CODE_BYTES = 1024 * 1024
#: Largest stdin accepted for one run.
MAX_STDIN_BYTES = 8 * 1024 * 1024
#: Default caps on captured output; beyond them output is dropped and flagged.
DEFAULT_STDOUT_LIMIT = 1024 * 1024
DEFAULT_STDERR_LIMIT = 100 * 1024

#: Processes started with ``process_start`` that may run at once.
MAX_PROCESSES = 32
#: Output (characters) a process keeps for ``process_attach`` with ``replay``.
PROCESS_REPLAY_BYTES = 64 * 1024
#: Rich results (display outputs) one session block may report, and the size of each (JSON).
MAX_RESULTS = 64
MAX_RESULT_BYTES = 4 * 1024 * 1024
#: Directories one recursive ``watch_start`` may watch.
MAX_WATCH_DIRS = 1024

MAX_ENV_VARS = 128
MAX_ENV_NAME_BYTES = 128
MAX_ENV_VALUE_BYTES = 32 * 1024
MAX_PATH_BYTES = 4096

LANGUAGES = ("python", "javascript", "shell")
#: Resource limits a ``configure`` request may set for user code.
CONFIGURABLE_RLIMITS = ("RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_NOFILE")

#: The sandbox user's home: relative paths in the file API start here.
SANDBOX_HOME = "/home/user"
#: Host sockets the agent can reach appear in this directory inside the sandbox.
SERVICE_DIR = "/run/corral"
EGRESS_SOCKET = "egress.sock"
PORTS_SOCKET = "ports.sock"
#: Where the in-sandbox end of the egress proxy listens (127.0.0.1) by default.
EGRESS_RELAY_PORT = 3128

_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_REST = _NAME_START | frozenset("0123456789")

#: Names that would let a caller hook the loader, an interpreter or the shell
#: before the program runs. Matched exactly, plus every ``LD_*`` name.
BLOCKED_ENV_NAMES = frozenset(
    {
        "PATH",
        "IFS",
        "ENV",
        "BASH_ENV",
        "CDPATH",
        "GLOBIGNORE",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "GCONV_PATH",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "RES_OPTIONS",
        "MALLOC_CHECK_",
        "MALLOC_TRACE",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONINSPECT",
        "PYTHONUSERBASE",
        "PYTHONEXECUTABLE",
        "PYTHONBREAKPOINT",
        "PYTHONPLATLIBDIR",
        "PYTHONSAFEPATH",
        "PYTHONWARNINGS",
        "NODE_OPTIONS",
        "NODE_PATH",
        "NODE_REPL_EXTERNAL_MODULE",
        "NODE_EXTRA_CA_CERTS",
        "PERL5LIB",
        "PERL5OPT",
        "PERLLIB",
        "RUBYLIB",
        "RUBYOPT",
    }
)
BLOCKED_ENV_PREFIXES = ("LD_", "BASH_FUNC_", "GLIBC_")


def env_problem(name: object, value: object) -> str | None:
    """Say why ``name=value`` may not be passed into a sandbox, or None if it may."""
    if not isinstance(name, str) or not isinstance(value, str):
        return "environment variable names and values must be strings"
    if not name or name[0] not in _NAME_START or not _NAME_REST.issuperset(name):
        return f"environment variable name {name!r} is not of the form [A-Za-z_][A-Za-z0-9_]*"
    if len(name.encode()) > MAX_ENV_NAME_BYTES:
        return f"environment variable name {name[:40]!r}... is longer than {MAX_ENV_NAME_BYTES} bytes"
    if name in BLOCKED_ENV_NAMES or name.startswith(BLOCKED_ENV_PREFIXES):
        return f"environment variable {name} is blocked: it can change how the loader, interpreter or shell starts"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"environment variable {name} is not valid UTF-8 text"
    if len(value.encode()) > MAX_ENV_VALUE_BYTES:
        return f"environment variable {name} is longer than {MAX_ENV_VALUE_BYTES} bytes"
    if any(ord(ch) < 32 and ch != "\t" or ord(ch) == 127 for ch in value):
        return f"environment variable {name} contains a control character"
    return None


def env_problems(env: object) -> str | None:
    """Check a whole environment mapping; return the first problem found."""
    if not isinstance(env, dict):
        return "env must be a mapping of names to values"
    if len(env) > MAX_ENV_VARS:
        return f"at most {MAX_ENV_VARS} environment variables may be set, got {len(env)}"
    for name, value in env.items():
        problem = env_problem(name, value)
        if problem:
            return problem
    return None


def path_problem(path: object) -> str | None:
    """Say why ``path`` cannot name a file in a sandbox, or None if it can."""
    if not isinstance(path, str) or not path:
        return "path must be a non-empty string"
    if "\x00" in path:
        return "path contains a NUL byte"
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"path is longer than {MAX_PATH_BYTES} bytes"
    return None


#: At most this many files may come with one isolated run (``exec``'s ``files``).
MAX_RUN_FILES = 1000


def run_file_problem(path: object) -> str | None:
    """Say why ``path`` cannot name a file given to an isolated run (relative to its home), or None."""
    problem = path_problem(path)
    if problem:
        return problem
    if path.startswith("/"):
        return f"{path!r} must be relative to the run's home directory"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return f"{path!r} must not contain empty, '.' or '..' components"
    return None


_INFINITIES = (float("inf"), float("-inf"))


class _ScanContext:
    """The attributes CPython's C scanner reads from a JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_int = int

    @staticmethod
    def parse_float(text):
        value = float(text)
        if value in _INFINITIES:  # 1e400: Infinity spelled as a number
            raise ValueError(f"{text[:40]} is out of range for a protocol frame")
        return value

    @staticmethod
    def parse_constant(name):
        raise ValueError(f"{name} is not allowed in a protocol frame")


_scan_once = _json.make_scanner(_ScanContext()) if _json is not None else None
_WHITESPACE = " \t\n\r"


def loads(text):
    """Parse one JSON document (strict: no NaN or Infinity, nor a number too large for a float); ValueError on
    anything else."""
    if _scan_once is None:  # pragma: no cover - not CPython
        import json

        try:
            return json.loads(text, parse_constant=_ScanContext.parse_constant, parse_float=_ScanContext.parse_float)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan_once(text, start)
    except StopIteration as exc:
        raise ValueError(f"invalid JSON at offset {exc.value}") from None
    except RecursionError:  # "[[[[..." from a peer: an invalid frame like any other
        raise ValueError("JSON nested too deeply") from None
    except SystemError:  # the C scanner reports most errors through json.decoder's JSONDecodeError, and
        # without ``json.decoder`` imported (the agent never imports it) it fails without an exception
        raise ValueError("invalid JSON") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"extra data after JSON at offset {end}")
    return value


def dumps(value):
    """Serialize plain data (dict, list, str, int, float, bool, None) as compact JSON."""
    parts = []
    _encode(value, parts)
    return "".join(parts)


def _encode(value, parts):
    if isinstance(value, str):
        parts.append(_quote(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        parts.append(int.__repr__(value))
    elif isinstance(value, float):
        if value != value or value in _INFINITIES:
            raise ValueError("NaN and Infinity cannot be sent")
        parts.append(float.__repr__(value))
    elif isinstance(value, dict):
        parts.append("{")
        for index, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings, got {type(key).__name__}")
            parts.append("," if index else "")
            parts.append(_quote(key))
            parts.append(":")
            _encode(item, parts)
        parts.append("}")
    elif isinstance(value, (list, tuple)):
        parts.append("[")
        for index, item in enumerate(value):
            parts.append("," if index else "")
            _encode(item, parts)
        parts.append("]")
    else:
        raise TypeError(f"{type(value).__name__} cannot be sent in a protocol frame")


def _quote(text):
    if _json is not None:
        return _json.encode_basestring(text)
    import json  # pragma: no cover - not CPython

    return json.dumps(text, ensure_ascii=False)


def encode_frame(message: dict) -> bytes:
    """Serialize one message as a protocol line."""
    return dumps(message).encode("utf-8", "surrogatepass") + b"\n"


def decode_frame(line: bytes) -> dict:
    """Parse one protocol line; raise ValueError if it is not a JSON object with a type."""
    if len(line) > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {len(line)} bytes exceeds {MAX_FRAME_BYTES}")
    message = loads(line.decode("utf-8", "surrogatepass"))
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError("frame is not a JSON object with a string 'type'")
    return message
