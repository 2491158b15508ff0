//! Admin HTTP: /metrics, /healthz, /readyz, /status, drain/undrain.
