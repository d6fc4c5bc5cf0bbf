"""The call's vocabulary, declared once: what the robot, Asterisk, the store and the console say.

- ``dialplan``: the ``IVR_*`` channel variables (who sets each, who reads it) and ``IVR_RESULT``'s values;
- ``outcomes``: how a call ended (``Outcome``), why (``Reason``), the facts a call is judged by
  (``CallFacts``) and the one function that turns facts into an outcome (``decide_outcome``);
- ``events``: the timeline event kinds and the fields each one carries.

Pure declarations, no I/O, and no import of anything else of ours: ``crm_bridge`` (which never
imports ``ivr``), ``ivr`` and even the pure flows (``ivr.flows``) can all depend on it. It lives in
``crm_bridge`` because that is the lower of the two packages, not because it belongs to the store.
Values are ``StrEnum`` members: they are the strings on the wire, in the database and in JSON.
"""
