//! The report for people (`ferry check`'s text output).

use std::fmt::Write;

use crate::spec::ImageKind;
use crate::units::human_bytes;

use super::report::*;

/// Renders the report for people: the clouds, the clusters, the images,
/// the conversion hosts, the problems and a last line that says whether the
/// migration is ready.
pub fn render_text(r: &CheckReport) -> String {
    let mut s = String::new();
    clouds(r, &mut s);
    sites(r, &mut s);
    images(r, &mut s);
    hosts(r, &mut s);
    problems(r, &mut s);
    summary(r, &mut s);
    s
}

/// Each cloud: its project, roles and endpoints.
fn clouds(r: &CheckReport, s: &mut String) {
    for c in &r.clouds {
        let _ = writeln!(
            s,
            "{} cloud {}{}",
            c.side,
            c.name,
            c.region
                .as_deref()
                .map(|x| format!(" (region {x})"))
                .unwrap_or_default()
        );
        if c.error.is_some() {
            let _ = writeln!(s, "  not connected");
            continue;
        }
        let _ = writeln!(
            s,
            "  project     {} (roles: {})",
            c.project_id.as_deref().unwrap_or("?"),
            c.roles.join(", ")
        );
        for (svc, ep) in &c.endpoints {
            let _ = writeln!(
                s,
                "  {svc:<11} {}",
                match ep {
                    Ok(u) => u.clone(),
                    Err(_) => "MISSING".into(),
                }
            );
        }
    }
}

/// Each cluster the spec names: health, usage, pools, rbd-mirror.
fn sites(r: &CheckReport, s: &mut String) {
    for site in [&r.source, &r.destination]
        .into_iter()
        .filter(|s| !s.conf.as_os_str().is_empty())
    {
        let _ = writeln!(
            s,
            "{} cluster {} as client.{}{}",
            site.side,
            site.cluster,
            site.client,
            site.fsid
                .as_deref()
                .map(|f| format!(" (fsid {f})"))
                .unwrap_or_default()
        );
        if site.connect_error.is_some() {
            let _ = writeln!(s, "  not connected");
            continue;
        }
        if let Some(h) = &site.health {
            let _ = writeln!(s, "  health      {}", h.status);
        }
        if let Some(u) = &site.usage {
            let _ = writeln!(
                s,
                "  usage       {} of {} ({:.1}%)",
                human_bytes(u.used_bytes),
                human_bytes(u.total_bytes),
                u.used_ratio() * 100.0
            );
        }
        for p in &site.pools {
            let state = if p.error.is_some() {
                "ERROR".to_string()
            } else if let Some(m) = p.mirror_mode {
                let peers: Vec<String> = p
                    .peers
                    .iter()
                    .map(|x| {
                        format!(
                            "{} {}",
                            if x.site_name.is_empty() {
                                &x.uuid
                            } else {
                                &x.site_name
                            },
                            x.direction
                        )
                    })
                    .collect();
                format!(
                    "mirroring {m}{}",
                    if peers.is_empty() {
                        String::new()
                    } else {
                        format!(", peers: {}", peers.join(", "))
                    }
                )
            } else {
                "present".to_string()
            };
            let _ = writeln!(
                s,
                "  pool        {:<20} {:<16} {state}",
                p.name,
                p.purpose.describe()
            );
        }
        if let Some(d) = &site.rbd_mirror_daemons {
            let ids: Vec<String> = d
                .iter()
                .map(|d| format!("{} on {}", d.id, d.hostname))
                .collect();
            let _ = writeln!(
                s,
                "  rbd-mirror  {}",
                if ids.is_empty() {
                    "none running".to_string()
                } else {
                    ids.join(", ")
                }
            );
        }
    }
}

/// Each image: size, snapshots, use, features and mirroring.
fn images(r: &CheckReport, s: &mut String) {
    if !r.images.is_empty() {
        let _ = writeln!(s, "images");
        for i in &r.images {
            let kind = match i.image.kind {
                ImageKind::Cinder => "cinder",
                ImageKind::Glance => "glance",
            };
            if i.error.is_some() {
                let _ = writeln!(s, "  {:<40} {kind:<7} ERROR", i.image.source_spec());
                continue;
            }
            if i.streamed {
                let _ = writeln!(
                    s,
                    "  {:<40} {kind:<7} streams through the conversion hosts",
                    i.image.source_spec()
                );
                continue;
            }
            let _ = writeln!(
                s,
                "  {:<40} {kind:<7} {:>10}  snaps {:<2} {}  [{}]{}",
                i.image.source_spec(),
                i.size.map(human_bytes).unwrap_or_default(),
                i.user_snapshots.len(),
                if i.in_use() { "IN USE" } else { "idle  " },
                i.features.map(|f| f.to_string()).unwrap_or_default(),
                i.mirroring
                    .map(|m| format!("  mirroring {m}"))
                    .unwrap_or_default(),
            );
        }
    }
}

/// Each conversion host and the ferry it runs.
fn hosts(r: &CheckReport, s: &mut String) {
    if !r.conversion_hosts.is_empty() {
        let _ = writeln!(s, "conversion hosts");
        for h in &r.conversion_hosts {
            let _ = writeln!(
                s,
                "  {:<11} {:<28} {}",
                h.side.to_string(),
                h.ssh,
                h.version.as_deref().unwrap_or("UNREACHABLE")
            );
        }
    }
}

/// The problems, each with its hint.
fn problems(r: &CheckReport, s: &mut String) {
    if !r.problems.is_empty() {
        let _ = writeln!(s, "problems");
        for p in &r.problems {
            let sev = match p.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let _ = writeln!(s, "  {sev}: {}: {}", p.subject, p.message);
            if let Some(h) = &p.hint {
                let _ = writeln!(s, "      hint: {h}");
            }
        }
    }
}

/// The last line: ready or not, and how many problems.
fn summary(r: &CheckReport, s: &mut String) {
    let errors = r
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = r.problems.len() - errors;
    let _ = writeln!(
        s,
        "{}: {errors} error(s), {warnings} warning(s)",
        if r.ok() { "ready" } else { "NOT READY" }
    );
}
