"""Decisions learned from the labelled question bank.

Whose situation, covered or not, which sections and sentences answer, whether a whole list is asked for.
``training`` fits them, ``store`` keeps them beside the index, ``judge`` applies them.
"""
