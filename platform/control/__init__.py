"""The control plane's service layer, framework-free: the only writer of definitions, jobs,
principals and the audit log (issue 15). ``featurebus.serving.control`` puts HTTP in front of it."""
