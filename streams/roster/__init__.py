"""The roster stream: SIS changes in, LMS provisioning commands out (see :mod:`.app`).

:mod:`.desired` says what the LMS should hold, :mod:`.commands` turns the difference into
commands, :mod:`.reference` keeps orgs and courses whole in each worker, :mod:`.plan` computes a
whole district at once for comparison, and :mod:`.app` is the Faust app with its agents.
"""
