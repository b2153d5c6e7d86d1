//! MQTT, the leader's side: the embedded broker, the gate in front of it (who may publish and
//! subscribe to what), the accounts of a Trellis-managed Mosquitto, and the bridge that carries
//! messages between the broker and the domains.

pub mod bridge;
pub mod broker;
pub mod gate;
pub mod mosquitto;
