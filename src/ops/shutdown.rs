//! Process shutdown signals.

/// Resolves when the process receives SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C).
///
/// If a handler cannot be installed the failure is logged and the remaining signal is still
/// awaited; should neither handler install, the future never resolves.
pub async fn signal() {
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::info!("received SIGINT, shutting down"),
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGINT");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate() => {}
    }
}

#[cfg(unix)]
async fn terminate() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut sig) => {
            sig.recv().await;
            tracing::info!("received SIGTERM, shutting down");
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending::<()>().await;
}
