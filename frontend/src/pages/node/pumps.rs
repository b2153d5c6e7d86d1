//! The node page's Pumps section: the node's dosing pumps with their calibrations (the BCM pin
//! that switches each, and the millilitres it moves per second), which `pulse` by volume,
//! `turbidostat` and `chemostat` use. Operators change a pump's pin and rate in place; the values
//! are checked in the page with the rule the leader and the agent apply
//! ([`trellis_proto::PumpCalibration::check`]), and what the node refuses anyway (a pin another
//! pump has) is said next to the field. Also the telemetry the node's agent had to drop during
//! outages ([`Dropped`]), which the page says near its top.

use leptos::{ev::SubmitEvent, prelude::*};
use trellis_proto::PumpCalibration;

use crate::{
    Cluster,
    api::{self, NodeState, nodes},
    components::{Alert, Feedback, Mutation, bind, number_value, on},
};

/// What the section and the top of the page show of one node, loaded for the node the page
/// shows. `Copy`, so event handlers can hold it.
#[derive(Clone, Copy)]
pub(super) struct Telemetry {
    node_id: Memo<String>,
    node: RwSignal<Option<nodes::node_pumps::NodePumpsNode>>,
    error: RwSignal<Option<String>>,
}

impl Telemetry {
    /// Loads the node's pumps and losses, and again for another node or when the node comes back
    /// online (an agent that reconnects reports what it dropped meanwhile).
    pub(super) fn new(node_id: Memo<String>) -> Self {
        let cluster = expect_context::<Cluster>();
        let t = Telemetry {
            node_id,
            node: RwSignal::new(None),
            error: RwSignal::new(None),
        };
        let online = Memo::new(move |_| {
            let id = node_id.get();
            cluster
                .nodes
                .with(|l| l.iter().any(|n| n.id == id && n.state == NodeState::ONLINE))
        });
        Effect::new(move |_| {
            online.track();
            leptos::task::spawn_local(t.load());
        });
        t
    }

    async fn load(self) {
        let id = self.node_id.get_untracked();
        let vars = nodes::node_pumps::Variables { id: id.clone() };
        let answer = api::run::<nodes::NodePumps>(vars).await;
        // The page may show another node by now.
        if self.node_id.try_get_untracked().as_ref() != Some(&id) {
            return;
        }
        match answer {
            Ok(d) => {
                self.node.try_set(d.node);
                self.error.try_set(None);
            }
            Err(e) => {
                self.error.try_set(Some(e));
            }
        }
    }
}

/// "N readings / M log lines dropped by this node during outages", when the node's agent had to
/// drop any (its outage buffers were full): a loss said, never silent.
#[component]
pub(super) fn Dropped(t: Telemetry) -> impl IntoView {
    move || {
        t.node.with(|n| {
            let n = n.as_ref()?;
            (n.readings_dropped > 0 || n.log_lines_dropped > 0).then(|| {
                let words = format!(
                    "{} readings / {} log lines dropped by this node during outages",
                    n.readings_dropped, n.log_lines_dropped
                );
                view! { <p class="dropped" role="status">{words}</p> }
            })
        })
    }
}

/// The Pumps section.
#[component]
pub(super) fn PumpsSection(t: Telemetry) -> impl IntoView {
    let can_operate = expect_context::<Cluster>().can_operate;
    let pumps = move || {
        t.node.with(|n| {
            n.iter()
                .flat_map(|n| &n.pump_calibrations)
                .map(|p| p.pump.clone())
                .collect::<Vec<_>>()
        })
    };
    let none = Signal::derive(move || {
        t.node
            .with(|n| n.as_ref().is_none_or(|n| n.pump_calibrations.is_empty()))
    });
    view! {
        <section class="pumps">
            <h2>"Pumps"</h2>
            <Alert error=t.error/>
            <p class="empty" class:hidden=Signal::derive(move || !none.get())>"No pump calibrated on this node."</p>
            <table class="settings pumps" class:hidden=none>
                <thead><tr><th>"pump"</th><th>"pin (BCM)"</th><th>"ml/s"</th></tr></thead>
                <tbody>
                    <For each=pumps key=|p| p.clone() children=move |pump| view! { <PumpRow t pump can_operate/> }/>
                </tbody>
            </table>
        </section>
    }
}

/// One pump: its pin and rate, and for operators a form that changes them, with what became of
/// the last change next to it.
#[component]
fn PumpRow(t: Telemetry, pump: String, can_operate: bool) -> impl IntoView {
    let key = StoredValue::new(pump.clone());
    let shown = Memo::new(move |_| {
        t.node.with(|n| {
            let p = n
                .iter()
                .flat_map(|n| &n.pump_calibrations)
                .find(|p| key.with_value(|k| &p.pump == k))?;
            Some((p.pin.to_string(), p.ml_per_second.to_string()))
        })
    });
    // What the user typed. The inputs show, and follow, the calibration in force; they are not
    // set from what is typed, which would clear a half-typed number ("0." reads as empty) as it
    // is typed. A refused value stays in its input, next to the reason.
    let pin = RwSignal::new(String::new());
    let rate = RwSignal::new(String::new());
    Effect::new(move |_| {
        if let Some((p, r)) = shown.get() {
            pin.set(p);
            rate.set(r);
        }
    });
    let save_m = Mutation::new();
    let save = move |ev: SubmitEvent| {
        ev.prevent_default();
        let (pin_text, rate_text) = (pin.get_untracked(), rate.get_untracked());
        let Ok(pin) = pin_text.trim().parse::<u8>() else {
            save_m.fail(format!("pin {pin_text} is not a BCM pin (0-27)"));
            return;
        };
        let Some(ml_per_second) = number_value(&rate_text).and_then(|v| v.as_f64()) else {
            save_m.fail(format!("ml/s {rate_text:?} is not a number"));
            return;
        };
        let wanted = PumpCalibration {
            pump: key.get_value(),
            pin,
            ml_per_second,
        };
        if let Err(why) = wanted.check() {
            save_m.fail(why);
            return;
        }
        let vars = nodes::set_pump_calibration::Variables {
            node_id: t.node_id.get_untracked(),
            pump: wanted.pump.clone(),
            pin: pin.into(),
            ml_per_second,
        };
        // The node took it: the row shows it (the list the leader keeps follows once the node
        // publishes it, which a later load brings).
        save_m.run::<nodes::SetPumpCalibration, _>(vars, move |_| {
            t.node.try_update(|n| {
                let p = n
                    .iter_mut()
                    .flat_map(|n| &mut n.pump_calibrations)
                    .find(|p| p.pump == wanted.pump);
                if let Some(p) = p {
                    p.pin = wanted.pin.into();
                    p.ml_per_second = wanted.ml_per_second;
                }
            });
            format!(
                "{} is now on pin {} at {} ml/s.",
                wanted.pump, wanted.pin, wanted.ml_per_second
            )
        });
    };
    let value = move |pick: fn(&(String, String)) -> &String| {
        move || shown.with(|s| s.as_ref().map(|s| pick(s).clone()).unwrap_or_default())
    };
    let row = pump.clone();
    view! {
        <tr data-pump=row>
            <th>{pump}</th>
            <td class="value pin">{value(|s| &s.0)}</td>
            <td class="value rate">{value(|s| &s.1)}</td>
            {can_operate.then(|| view! {
                <td class="edit">
                    <form class="setting-form" novalidate on:submit=on(save)>
                        <input type="number" name="pin" aria-label="pin" min="0" max="27" step="1"
                            prop:value=value(|s| &s.0) on:input=bind(pin)/>
                        <input type="number" name="ml-per-second" aria-label="ml/s" min="0" max="100" step="any"
                            prop:value=value(|s| &s.1) on:input=bind(rate)/>
                        <button type="submit" class="save" prop:disabled=save_m.busy()>"Save"</button>
                    </form>
                    <Feedback mutation=save_m/>
                </td>
            })}
        </tr>
    }
}
