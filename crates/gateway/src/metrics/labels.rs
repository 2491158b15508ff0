//! Trunk and route names as label values, and the label set of each
//! family.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use lifeline_io::ProxyNames;
use lifeline_proxy::{AttemptFailure, TrunkId};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// A trunk or route name as a label value: cloning it is a reference-count
/// increment, not an allocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Name(Arc<str>);

impl Name {
    pub(super) fn new(s: &str) -> Self {
        Self(Arc::from(s))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(&self.0)
    }
}

/// Trunk and route names, built once from the proxy's [`ProxyNames`] (and
/// again after a configuration reload) so events, which carry a
/// [`TrunkId`], can be labelled without allocating.
#[derive(Clone, Debug, Default)]
pub(crate) struct Names {
    pub(super) trunks: Vec<Name>,
    pub(super) routes: Vec<Name>,
}

impl Names {
    /// The names the proxy knew when it took `proxy`.
    pub(crate) fn new(proxy: &ProxyNames) -> Self {
        let mut trunks = Vec::new();
        for (id, name) in proxy.trunks() {
            let i = id.index();
            if trunks.len() <= i {
                trunks.resize_with(i + 1, || Name::new(""));
            }
            trunks[i] = Name::new(name);
        }
        let routes = proxy.routes().map(|(name, _)| Name::new(name)).collect();
        Self { trunks, routes }
    }

    pub(super) fn trunk(&self, id: TrunkId) -> Name {
        match self.trunks.get(id.index()) {
            Some(n) if !n.0.is_empty() => n.clone(),
            // A trunk added after the names were built: still counted.
            _ => Name::new(&format!("trunk-{}", id.index())),
        }
    }

    pub(super) fn route(&self, name: &str) -> Name {
        if name.is_empty() {
            return Name::new("none");
        }
        match self.routes.iter().find(|r| r.as_str() == name) {
            Some(r) => r.clone(),
            None => Name::new(name),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct CallLabels {
    pub(super) route: Name,
    pub(super) outcome: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RouteLabels {
    pub(super) route: Name,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RuleLabels {
    pub(super) rule: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct TrunkLabels {
    pub(super) trunk: Name,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct FailoverLabels {
    pub(super) trunk: Name,
    pub(super) reason: Reason,
}

/// `lifeline_failovers_total`'s `reason`: a fixed name, or `response-<status>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Reason(pub(super) AttemptFailure);

impl EncodeLabelValue for Reason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        match self.0 {
            AttemptFailure::Response(code) => write!(encoder, "response-{code}"),
            other => encoder.write_str(other.as_str()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RescueLabels {
    pub(super) trunk: Name,
    pub(super) ringing: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct SkipLabels {
    pub(super) trunk: Name,
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ProgressLabels {
    pub(super) trunk: Name,
    pub(super) from: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct StateLabels {
    pub(super) trunk: Name,
    pub(super) state: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct StateChangeLabels {
    pub(super) trunk: Name,
    pub(super) to: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct EmergencyLabels {
    pub(super) emergency: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct KindLabels {
    pub(super) kind: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct DirectionLabels {
    pub(super) direction: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RejectedLabels {
    pub(super) status: Status,
    pub(super) reason: &'static str,
}

/// `lifeline_admission_refused_total`: why a new request was refused, and
/// whether it was answered (`reject`: 503) or dropped.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct AdmissionLabels {
    pub(super) reason: &'static str,
    pub(super) action: &'static str,
}

/// `lifeline_tcp_closed_total`: the bound a connection broke.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct TcpClosedLabels {
    pub(super) reason: &'static str,
}

/// `lifeline_capture_dropped_total`: why a captured message was not exported.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct CaptureDropLabels {
    pub(super) reason: &'static str,
}

/// `lifeline_rejected_total`: why, whatever the answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RejectReasonLabels {
    pub(super) reason: &'static str,
}

/// A status code, or `dropped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Status(pub(super) Option<u16>);

impl EncodeLabelValue for Status {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        match self.0 {
            Some(code) => write!(encoder, "{code}"),
            None => encoder.write_str("dropped"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct MessageLabels {
    pub(super) direction: &'static str,
    pub(super) kind: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct VersionLabels {
    pub(super) version: &'static str,
}
