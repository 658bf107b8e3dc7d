"""corral results as MCP content: text, notes, truncation, and rich display outputs as images."""

from __future__ import annotations

from mcp_types import ImageContent, TextContent

from corral.mcp.content import display_outputs, execution_content, failed, listing_text, truncate
from corral.models import DisplayResult, ExecutionResult, FileEntry

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def with_results(result: ExecutionResult, bundles: list[dict]) -> ExecutionResult:
    """``result`` carrying ``bundles`` as its display outputs, as a session block with rich outputs gives."""
    return result.model_copy(update={"results": [DisplayResult(data=bundle) for bundle in bundles]})


def test_display_outputs_become_images_text_and_notes_in_order():
    result = with_results(ExecutionResult(exit_code=0, stdout="plotted\n"), [
        {"text/plain": "<Figure size 640x480>", "image/png": PNG_B64},
        {"text/plain": "42"},
        {"image/jpeg": PNG_B64},
        {"text/html": "<b>table</b>", "application/json": {"a": 1}},
    ])
    content = execution_content(result, 1000)
    assert isinstance(content[0], TextContent) and "plotted" in content[0].text
    assert isinstance(content[1], ImageContent) and (content[1].mime_type, content[1].data) == ("image/png", PNG_B64)
    assert isinstance(content[2], TextContent) and content[2].text == "42"
    assert isinstance(content[3], ImageContent) and (content[3].mime_type, content[3].data) == ("image/jpeg", PNG_B64)
    assert content[4].text == "[a display output of application/json, text/html: not shown here]"
    assert len(content) == 5


def test_a_result_without_display_outputs_is_text_only():
    result = ExecutionResult(exit_code=0, stdout="a\n", stderr="b\n")
    assert display_outputs(result) == []
    texts = [block.text for block in execution_content(result, 1000)]
    assert texts == ["exit code: 0\n--- stdout ---\na\n--- stderr ---\nb"]
    assert display_outputs(with_results(result, [])) == []


def test_limits_are_notes_and_make_the_call_fail():
    result = ExecutionResult(exit_code=137, timed_out=True, session_reset=True, stdout_truncated=True)
    text = execution_content(result, 1000, timeout=2.5)[0].text
    assert "timed out after 2.5 s" in text and "interpreter was restarted" in text
    assert "stdout passed the sandbox's output limit" in text and "(no output)" in text
    assert failed(result) and failed(ExecutionResult(exit_code=137, oom_killed=True))
    assert not failed(ExecutionResult(exit_code=1, stderr="Traceback"))


def test_truncate_keeps_the_start_and_the_end():
    assert truncate("short", 10) == "short"
    cut = truncate("A" * 50 + "B" * 50, 20)
    assert cut.startswith("A" * 10) and cut.endswith("B" * 10) and "80 characters left out of 100" in cut


def test_listing():
    entries = [FileEntry(name="b.txt", kind="file", size=3, mode=0o100644, mtime=0.0),
               FileEntry(name="a", kind="dir", size=4096, mode=0o40755, mtime=0.0)]
    assert listing_text("data", entries, 1000).splitlines() == [
        "data: 2 entries", "dir           4096 0755 a/", "file             3 0644 b.txt"]
    assert listing_text("data", [], 1000) == "data: empty directory"
