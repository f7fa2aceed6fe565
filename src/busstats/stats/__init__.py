"""Answers over committed dates: the per-country query and its export formats."""
