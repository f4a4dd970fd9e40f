"""Closed-loop norepinephrine titration to a MAP target, through the safety process.

``loop.ClosedLoop`` is the controller (modes, alarms, journal); ``artefacts`` judges the
samples, ``model`` estimates where the drug is and how sensitive the patient is,
``limits`` sizes each change under the safety rules and checks it with the kernel's own
``decide``; ``settings`` holds what the operator sets. docs/closed-loop.md.
"""
