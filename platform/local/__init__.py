"""Running the whole platform on one machine for development: ``featurebus up`` (``up``), the
process supervisor it uses (``supervisor``), the demo's scripted tour (``demo``) and the fraud
event generator the demo and benchmarks share (``generator``)."""
