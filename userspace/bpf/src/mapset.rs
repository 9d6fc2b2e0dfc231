//! A bottle's maps by name, apart from any loaded object: what the policy writer, the
//! read-back, the live-slot switch and the audit reader work on. A cgroup bottle's maps
//! are made here straight from ebpf/bottle_maps.bpf.c (no programs in it, so none of
//! `aya::EbpfLoader`'s work is needed: its constructor alone parses the kernel's BTF,
//! ~15 ms); a VM bottle's come out of its tap object; an adopted bottle's are opened from
//! their pins.

use std::collections::HashMap;
use std::path::Path;

use aya::Ebpf;
use aya::maps::{Map, MapData};
use aya_obj::{EbpfSectionKind, Object};

use crate::BpfError;

/// Maps by name.
#[derive(Default)]
pub struct MapSet(HashMap<String, Map>);

fn aya_err(map: String, operation: &'static str) -> impl Fn(aya::maps::MapError) -> BpfError {
    move |source| BpfError::PinnedMap {
        object: "bottle_maps",
        map: format!("{map} ({operation})"),
        source: Box::new(source),
    }
}

impl MapSet {
    pub fn map(&self, name: &str) -> Option<&Map> {
        self.0.get(name)
    }

    pub fn map_mut(&mut self, name: &str) -> Option<&mut Map> {
        self.0.get_mut(name)
    }

    /// Takes a map out (the audit reader owns the ring buffer from then on).
    pub fn take_map(&mut self, name: &str) -> Option<Map> {
        self.0.remove(name)
    }

    /// Every map of a loaded object, taken out of it (the object keeps its programs, whose
    /// instructions already hold the maps).
    pub(crate) fn take_all(ebpf: &mut Ebpf) -> Self {
        let names: Vec<String> = ebpf.maps().map(|(n, _)| n.to_owned()).collect();
        MapSet(
            names
                .into_iter()
                .filter_map(|n| ebpf.take_map(&n).map(|m| (n, m)))
                .collect(),
        )
    }

    /// Creates every map `bytes` (an object of map definitions only) declares and pins
    /// each at `pin_dir/<name>`.
    pub(crate) fn create_pinned(
        object: &'static str,
        bytes: &[u8],
        pin_dir: &Path,
    ) -> Result<Self, BpfError> {
        let obj = Object::parse(bytes).map_err(|e| BpfError::Prepare {
            object,
            operation: "parse",
            source: Box::new(e),
        })?;
        let mut maps = HashMap::new();
        for (name, def) in obj.maps {
            if def.section_kind() != EbpfSectionKind::BtfMaps {
                continue;
            }
            let data =
                MapData::create(def, &name, None).map_err(aya_err(name.clone(), "create"))?;
            data.pin(pin_dir.join(&name))
                .map_err(|source| BpfError::PinnedMap {
                    object,
                    map: format!("{name} (pin)"),
                    source: Box::new(aya::maps::MapError::PinError {
                        name: Some(name.clone()),
                        error: source,
                    }),
                })?;
            let map = Map::from_map_data(data).map_err(aya_err(name.clone(), "open"))?;
            maps.insert(name, map);
        }
        Ok(MapSet(maps))
    }

    /// Opens the maps `names` pinned in `pin_dir`; a missing pin is an error.
    pub(crate) fn open_pinned(pin_dir: &Path, names: &[&str]) -> Result<Self, BpfError> {
        let mut maps = HashMap::new();
        for &name in names {
            let map = MapData::from_pin(pin_dir.join(name))
                .and_then(Map::from_map_data)
                .map_err(aya_err(name.to_owned(), "open"))?;
            maps.insert(name.to_owned(), map);
        }
        Ok(MapSet(maps))
    }
}
