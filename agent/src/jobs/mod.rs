//! Work the agent does for the leader. Today: the command runner, which answers each command once
//! however often QoS 1 delivers it.

pub mod commands;
