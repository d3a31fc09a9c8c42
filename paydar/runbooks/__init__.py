"""Executable incident runbooks: the Markdown files in this folder, and the engine that runs them.

A runbook is Markdown an SRE can read in an incident. Its ``## Steps`` and ``## Verify``
sections hold fenced ``sh`` blocks, each one step, run in order by ``paydar runbook run``; the
paragraph before a block says what the step does. ``## Inputs`` lists the variables its steps
use (``--set NAME=VALUE``); ``## If a step fails`` and ``## Roll back`` are shown when a step
fails. Parsing uses markdown-it-py, so what runs is exactly what a Markdown viewer shows in
code blocks.
"""
