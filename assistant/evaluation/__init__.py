"""The eval suite: run the assistant over known questions, score the replies, report and gate.

``assistant eval`` (see :func:`assistant.evaluation.runner.run_eval_command`) is
the entry point; ``evals/README.md`` documents every metric it writes.
"""
