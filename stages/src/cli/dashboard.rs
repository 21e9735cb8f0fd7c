//! `--dashboard ADDR` of `demo`, `chaos` and `batch`: the live page of the
//! command's pipeline (`demandflow_stages::dashboard`), kept until the run
//! ends so open pages see its final state.

use std::net::SocketAddr;

use demandflow::pipeline::PipelineWatch;

/// The page, while it is served.
#[derive(Debug)]
pub(crate) struct Served {
    #[cfg(feature = "dashboard")]
    dashboard: demandflow_stages::dashboard::Dashboard,
}

/// Serves the dashboard of `watch` on `addr` when one was asked for, and says
/// where on stderr (stdout carries the command's own output).
pub(crate) async fn serve(
    watch: PipelineWatch,
    addr: Option<SocketAddr>,
    title: &str,
) -> Result<Option<Served>, String> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    #[cfg(feature = "dashboard")]
    {
        let dashboard = demandflow_stages::dashboard::Dashboard::builder(watch)
            .title(title)
            .serve(addr)
            .await
            .map_err(|e| format!("--dashboard {addr}: {e}"))?;
        errln!("demandflow: dashboard on {}", dashboard.url());
        Ok(Some(Served { dashboard }))
    }
    #[cfg(not(feature = "dashboard"))]
    {
        let _ = (watch, title);
        Err(format!(
            "--dashboard {addr}: this demandflow was built without the `dashboard` feature"
        ))
    }
}

/// After the run: gives open pages up to a second to receive the final
/// snapshot ("stopped") before the server goes.
pub(crate) async fn close(served: Option<Served>) {
    #[cfg(feature = "dashboard")]
    if let Some(mut s) = served {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), s.dashboard.closed()).await;
    }
    #[cfg(not(feature = "dashboard"))]
    drop(served);
}
