"""The one exception type for a user's mistake.

Everything routemix raises on bad input that a person can fix (a missing dataset, a malformed
file, a corrupt checkpoint) is a :class:`RoutemixError` with a message that says what was wrong
and what to do. The command line prints the message alone and exits non-zero; anything else is a
bug and keeps its traceback.
"""


class RoutemixError(ValueError):
    """Bad input that the user can fix; the message says how.

    Subclasses ``ValueError`` so that scikit-learn style callers who catch ``ValueError`` for
    invalid data keep working.
    """


def unknown_name(kind: str, name: str, known, where: str) -> RoutemixError:
    """The error for a name missing from a registry, suggesting the closest known names."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return RoutemixError(f"unknown {kind} {name!r}.{hint} {where}")
