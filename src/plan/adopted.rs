//! Whose an adoption in the destination cloud is. A volume ferry adopted
//! carries the source it holds (`ferry_source_volume`), the plan that
//! adopted it (`ferry_plan`) and, where the adopting reader knew it, the
//! digest its copy was verified with (`ferry_copy_sha256`); a Glance image
//! carries `ferry_source` and `ferry_plan`. A plan takes an adoption as its
//! own only when they are its own: a kept trial migration's volume is
//! another plan's, and `options.earlier_adoption` says what to do with it.
//! Pure: ferry's executor and the scripts read the same marks.

use std::collections::BTreeMap;

use super::{ImageRegistration, VolumeAdoption, ADOPTED_FROM};
pub use crate::spec::EarlierAdoption;

/// Metadata of an adopted volume (property of a registered image): the id
/// of the plan that adopted it.
pub const ADOPTED_BY: &str = "ferry_plan";
/// Metadata of an adopted volume: the SHA-256 its copy was verified with
/// (the verified record's), when the adopting reader could read it.
pub const COPY_DIGEST: &str = "ferry_copy_sha256";
/// Metadata of a volume another plan's adoption replaced: that plan's id.
pub const REPLACED_BY: &str = "ferry_replaced_by";
/// Metadata of a replaced volume: the `ferry_source_volume` it had (moved,
/// so that no plan finds it as an adoption any more).
pub const REPLACED_SOURCE: &str = "ferry_replaced_source_volume";

/// Whose adoption a volume (or image) is, by its marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whose {
    /// This plan's, of this copy.
    ThisPlan,
    /// Another plan's (its id; None: an older ferry's, which noted none),
    /// or this plan's of another copy (`digest` says so).
    Earlier {
        plan: Option<String>,
        digest: Option<String>,
    },
}

/// Whose adoption marks `meta` (a volume's metadata, an image's properties)
/// say it is, for plan `plan_id` whose verified copy has digest `digest`
/// (None: the reader does not know it, and the plan id alone decides).
pub fn whose(meta: &BTreeMap<String, String>, plan_id: &str, digest: Option<&str>) -> Whose {
    let plan = meta.get(ADOPTED_BY).cloned();
    let theirs = meta.get(COPY_DIGEST).cloned();
    let same_copy = match (digest, theirs.as_deref()) {
        (Some(want), Some(have)) => want == have,
        _ => true,
    };
    if plan.as_deref() == Some(plan_id) && same_copy {
        Whose::ThisPlan
    } else {
        Whose::Earlier {
            plan,
            digest: theirs,
        }
    }
}

impl Whose {
    /// "plan P", "an older ferry (no plan noted)" or "this plan, of another
    /// copy (digest …)": for messages.
    pub fn describe(&self, plan_id: &str) -> String {
        match self {
            Whose::ThisPlan => format!("this plan ({plan_id})"),
            Whose::Earlier { plan: None, .. } => "an older ferry (no plan noted)".into(),
            Whose::Earlier {
                plan: Some(p),
                digest,
            } if p == plan_id => format!(
                "this plan, but of another copy (digest {})",
                digest.as_deref().unwrap_or("?")
            ),
            Whose::Earlier { plan: Some(p), .. } => format!("plan {p}"),
        }
    }
}

impl VolumeAdoption {
    /// The metadata the adopted volume gets: the carried metadata, the
    /// source mark, this plan's id and, when known, the verified copy's
    /// digest. ferry and the scripts send the same.
    pub fn adopted_metadata(
        &self,
        plan_id: &str,
        digest: Option<&str>,
    ) -> BTreeMap<String, String> {
        let mut m = self.metadata.clone();
        m.insert(ADOPTED_FROM.into(), self.source_volume.clone());
        m.insert(ADOPTED_BY.into(), plan_id.into());
        match digest {
            Some(d) => m.insert(COPY_DIGEST.into(), d.into()),
            None => m.remove(COPY_DIGEST),
        };
        m
    }

    /// What manage-existing is asked for it: the RBD image `source_name`
    /// on backend `host`, with `metadata` (see
    /// [`VolumeAdoption::adopted_metadata`]). ferry and the scripts send
    /// the same.
    pub fn manage<'a>(
        &'a self,
        host: &'a str,
        source_name: &'a str,
        metadata: &'a BTreeMap<String, String>,
    ) -> crate::openstack::api::cinder::Manage<'a> {
        crate::openstack::api::cinder::Manage {
            host,
            source_name,
            name: &self.name,
            description: self.description.as_deref(),
            volume_type: self.volume_type.as_deref(),
            bootable: self.bootable,
            metadata,
        }
    }
}

impl ImageRegistration {
    /// The fields of Glance's `POST /v2/images` for it, marked with the
    /// plan's id. ferry and the scripts send the same.
    pub fn create_fields(&self, plan_id: &str) -> serde_json::Value {
        let mut fields = serde_json::json!({
            "id": self.id, "name": self.name, "disk_format": self.disk_format,
            "container_format": self.container_format,
            "min_disk": self.min_disk, "min_ram": self.min_ram,
        });
        for (k, v) in &self.properties {
            fields[k] = serde_json::json!(v);
        }
        fields[ADOPTED_BY] = serde_json::json!(plan_id);
        fields
    }
}

/// Cinder's longest volume name, in characters.
const NAME_MAX: usize = 255;

/// What replacing an earlier adoption does to that volume: its new name
/// and its whole new metadata (Cinder's volume update sets both at once,
/// so the volume is either still the adoption or plainly replaced). The
/// data, the attachments and the other metadata are left alone.
pub fn replaced(
    name: &str,
    meta: &BTreeMap<String, String>,
    plan_id: &str,
) -> (String, BTreeMap<String, String>) {
    // In characters, as Cinder counts (and the scripts' jq cuts).
    let suffix = format!(".ferry-replaced-{plan_id}");
    let keep = NAME_MAX.saturating_sub(suffix.chars().count());
    let new_name = format!("{}{suffix}", name.chars().take(keep).collect::<String>());
    let mut m = meta.clone();
    if let Some(src) = m.remove(ADOPTED_FROM) {
        m.insert(REPLACED_SOURCE.into(), src);
    }
    m.insert(REPLACED_BY.into(), plan_id.into());
    (new_name, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_adoption_is_this_plans_only_with_its_plan_id_and_copy() {
        let ours = meta(&[(ADOPTED_FROM, "s1"), (ADOPTED_BY, "p2")]);
        assert_eq!(whose(&ours, "p2", None), Whose::ThisPlan);
        // No digest noted (a script adopted it): the plan id decides.
        assert_eq!(whose(&ours, "p2", Some("d2")), Whose::ThisPlan);
        // A kept trial migration's volume: another plan.
        let trial = meta(&[(ADOPTED_FROM, "s1"), (ADOPTED_BY, "p1")]);
        let w = whose(&trial, "p2", None);
        assert_eq!(w.describe("p2"), "plan p1");
        // An older ferry noted no plan.
        let old = meta(&[(ADOPTED_FROM, "s1")]);
        assert_eq!(
            whose(&old, "p2", None).describe("p2"),
            "an older ferry (no plan noted)"
        );
        // This plan's id, but another copy (made again after an undo).
        let other = meta(&[(ADOPTED_BY, "p2"), (COPY_DIGEST, "d1")]);
        assert_eq!(whose(&other, "p2", None), Whose::ThisPlan);
        let w = whose(&other, "p2", Some("d2"));
        assert_eq!(
            w.describe("p2"),
            "this plan, but of another copy (digest d1)"
        );
        assert_eq!(whose(&other, "p2", Some("d1")), Whose::ThisPlan);
    }

    fn adoption() -> VolumeAdoption {
        VolumeAdoption {
            source_volume: "s1".into(),
            name: "db".into(),
            description: None,
            volume_type: None,
            bootable: false,
            metadata: meta(&[("k", "v"), (ADOPTED_BY, "p0"), (COPY_DIGEST, "old")]),
            image_metadata: BTreeMap::new(),
            host: None,
            earlier: EarlierAdoption::Refuse,
        }
    }

    #[test]
    fn adopted_metadata_names_the_source_the_plan_and_the_copy() {
        let a = adoption();
        let m = a.adopted_metadata("p2", Some("d2"));
        assert_eq!(
            m,
            meta(&[
                ("k", "v"),
                (ADOPTED_FROM, "s1"),
                (ADOPTED_BY, "p2"),
                (COPY_DIGEST, "d2")
            ])
        );
        // A carried digest of another move never stays.
        assert!(!a.adopted_metadata("p2", None).contains_key(COPY_DIGEST));
    }

    #[test]
    fn a_replaced_volume_is_renamed_and_unmarked_but_keeps_the_rest() {
        let m = meta(&[(ADOPTED_FROM, "s1"), (ADOPTED_BY, "p1"), ("k", "v")]);
        let (name, after) = replaced("db", &m, "p2");
        assert_eq!(name, "db.ferry-replaced-p2");
        assert_eq!(
            after,
            meta(&[
                (REPLACED_SOURCE, "s1"),
                (ADOPTED_BY, "p1"),
                ("k", "v"),
                (REPLACED_BY, "p2")
            ])
        );
        // No plan finds it as an adoption any more.
        assert!(!after.contains_key(ADOPTED_FROM));
        // Cinder's 255 characters hold the suffix, on a character boundary.
        let long = "é".repeat(300);
        let (name, _) = replaced(&long, &m, "p2");
        assert_eq!(name.chars().count(), NAME_MAX);
        assert!(name.ends_with(".ferry-replaced-p2"));
    }

    #[test]
    fn image_fields_carry_the_plan() {
        let g = ImageRegistration {
            id: "i1".into(),
            name: "web".into(),
            disk_format: "raw".into(),
            container_format: "bare".into(),
            min_disk: 1,
            min_ram: 0,
            properties: meta(&[("ferry_source", "volume:s1"), (ADOPTED_BY, "p0")]),
            earlier: EarlierAdoption::Refuse,
        };
        let f = g.create_fields("p2");
        assert_eq!(f["ferry_plan"], "p2");
        assert_eq!(f["ferry_source"], "volume:s1");
        assert_eq!(f["id"], "i1");
    }
}
