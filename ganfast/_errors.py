"""Errors reported in one line, where a traceback would bury what the user needs."""


def error_line(error: BaseException, limit: int | None = None) -> str:
    """'Type: first line of the message' ('Type' alone for an empty message), the message cut
    to `limit` characters if given: for a refusal or a skipped case that names what failed,
    the rest being in a traceback or of no use there."""
    lines = str(error).strip().splitlines()
    said = lines[0][:limit] if lines else ""
    return type(error).__name__ + (f": {said}" if said else "")
