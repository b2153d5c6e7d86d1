//! The state every handler, resolver and background loop shares: one service per domain, each
//! cheap to clone (its fields sit behind `Arc`s or are pools).

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::{
    ServerConfig, access, deployments, enroll, experiments, images, jobs,
    mqtt::{bridge, gate},
    nodes::{self, docker},
    telemetry::{self, Telemetry},
};

/// State shared by every handler and resolver. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Effective configuration.
    pub config: Arc<ServerConfig>,
    /// The node service.
    pub nodes: nodes::Nodes,
    /// Users, sessions and tokens.
    pub auth: access::Auth,
    /// The audit log.
    pub audit: access::audit::Audit,
    /// The MQTT bridge.
    pub bridge: bridge::Bridge,
    /// Join tokens, pending nodes and node credentials.
    pub enroll: enroll::Enroll,
    /// Live MQTT connections of nodes (through the gate), to cut off removed nodes.
    pub mqtt_connections: gate::Connections,
    /// Nodes' Docker engines.
    pub docker: docker::DockerAccess,
    /// Hardware jobs on the nodes.
    pub jobs: jobs::Jobs,
    /// Readings, job logs and calibrations.
    pub telemetry: Telemetry,
    /// Experiments and the nodes in them.
    pub experiments: experiments::Experiments,
    /// Retention rules and what the database holds.
    pub retention: telemetry::Retention,
    /// Experiment profiles and their runs.
    pub profiles: experiments::profiles::service::Profiles,
    /// Container deployments.
    pub deployments: deployments::Deployments,
    /// Nodes' engines as the deployment workers last reached them.
    pub engines: deployments::Engines,
    /// Images: sideloads, prune.
    pub images: images::Images,
    /// Apps: bundles, builds, app deployments.
    pub apps: images::apps::Apps,
}

/// How the server takes part in MQTT: its login, the gate's live connections and where join
/// requests that arrive on the bridge go.
pub struct MqttSide {
    /// Where the server's own client connects (over TLS for `mqtts://`).
    pub broker: trellis_proto::BrokerAddr,
    /// Which broker certificates the server's client trusts, for a broker over TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The server's own broker login, if the broker wants one.
    pub login: Option<(String, String)>,
    /// Live connections of nodes through the gate (empty behind an external broker).
    pub connections: gate::Connections,
    /// Where the bridge hands join requests (behind a managed Mosquitto); `None` ignores them.
    pub enroll_requests: Option<tokio::sync::mpsc::Sender<enroll::JoinRequest>>,
    /// The ingester's backlog, which the gate holds telemetry back by.
    pub backlog: telemetry::Backlog,
}

impl AppState {
    /// Builds the state and starts the MQTT bridge against the configured broker.
    pub fn start(
        config: ServerConfig,
        db: DatabaseConnection,
        shutdown: CancellationToken,
        mqtt: MqttSide,
        enroll: enroll::Enroll,
        docker_tls: docker::DockerTls,
    ) -> Self {
        let nodes = nodes::Nodes::new(db.clone());
        let jobs = jobs::Jobs::new(db.clone());
        let (telemetry, ingester) = telemetry::Telemetry::with_backlog(db.clone(), mqtt.backlog);
        let experiments = experiments::Experiments::new(db.clone(), jobs.clone());
        let shutdown_retention = shutdown.clone();
        let shutdown_profiles = shutdown.clone();
        let shutdown_deployments = shutdown.clone();
        let bridge = bridge::Bridge::start(
            &mqtt.broker,
            mqtt.tls,
            mqtt.login,
            bridge::Domains {
                nodes: nodes.clone(),
                jobs: jobs.clone(),
                telemetry: telemetry.clone(),
            },
            mqtt.enroll_requests,
            shutdown,
        );
        {
            let (bridge, stop) = (bridge.clone(), shutdown_retention.clone());
            crate::infra::supervise::supervise_owning("ingester", stop, ingester, move |mut i| {
                let bridge = bridge.clone();
                async move { i.run(bridge).await }
            });
        }
        let retention = telemetry::Retention::new(db.clone());
        {
            let (retention, stop) = (retention.clone(), shutdown_retention.clone());
            crate::infra::supervise::supervise("retention", shutdown_retention, move || {
                retention.clone().run(stop.clone())
            });
        }
        let auth = access::Auth::new(db.clone());
        let audit = access::audit::Audit::new(db.clone());
        let (profiles, scheduler) = experiments::profiles::service::Profiles::new(
            db.clone(),
            jobs.clone(),
            nodes.clone(),
            experiments.clone(),
            bridge.clone(),
            audit.clone(),
        );
        {
            let stop = shutdown_profiles.clone();
            crate::infra::supervise::supervise_owning(
                "profile scheduler",
                shutdown_profiles,
                scheduler,
                move |mut s| {
                    let stop = stop.clone();
                    async move { s.run(stop).await }
                },
            );
        }
        let docker = docker::DockerAccess::new(docker_tls, config.local_node_id());
        let images = images::Images::new(db.clone(), docker.clone(), config.image_settings());
        let (deployments, engines, reconciler) = deployments::new(
            db.clone(),
            docker.clone(),
            images.clone(),
            audit.clone(),
            nodes.clone(),
            config.deployment_settings(),
        );
        if let Some(every) = config.prune_every {
            let (images, deployments, stop) = (
                images.clone(),
                deployments.clone(),
                shutdown_deployments.clone(),
            );
            crate::infra::supervise::supervise("prune", stop.clone(), move || {
                images::prune::run_loop(images.clone(), deployments.clone(), every, stop.clone())
            });
        }
        {
            let stop = shutdown_deployments.clone();
            crate::infra::supervise::supervise_owning(
                "reconciler",
                shutdown_deployments,
                reconciler,
                move |mut r| {
                    let stop = stop.clone();
                    async move { r.run(stop).await }
                },
            );
        }
        let apps = images::apps::Apps::new(
            db,
            images.clone(),
            deployments.clone(),
            config.app_settings(),
        );
        {
            let apps = apps.clone();
            images.set_node_build(Arc::new(move |node, image| {
                let apps = apps.clone();
                Box::pin(async move { apps.build_for_node(&node, &image).await })
            }));
        }
        AppState {
            config: Arc::new(config),
            nodes,
            auth,
            audit,
            bridge,
            enroll,
            mqtt_connections: mqtt.connections,
            docker,
            jobs,
            telemetry,
            experiments,
            retention,
            profiles,
            deployments,
            engines,
            images,
            apps,
        }
    }
}
