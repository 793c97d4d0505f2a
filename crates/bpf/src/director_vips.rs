//! The director's VIPs by home slot (issue 16: the per-packet cost). The program finds a VIP
//! in an array slot chosen by a cheap hash of its key (`sy_dir_vip_slots`, an inlined array
//! lookup and a 24-byte compare) instead of a hash map lookup (a call that hashes the key). A
//! VIP whose home slot holds another VIP lives in the overflow hash (`sy_dir_vips`), and the
//! home slot says so (`SLOT_OVERFLOW`), so the program looks there only for such a slot.
//!
//! Every write keeps a reader from matching a half-written key: a key enters a slot with
//! family 0 first and gets its family in a second write (the only byte that changes), and
//! leaves it the same way round; a VIP re-pointed to another table changes only its aligned
//! `table_id`. A VIP moves from the overflow into a freed home slot before it leaves the
//! overflow (make-before-break), and the overflow flag goes with the last VIP of its home.
//! The state lives in the maps only, so a restarted director adopts it as it is.

use aya::maps::MapError;

use crate::{
    Error,
    abi::FrontendKey,
    director::{DirConfig, DirLookup, DirMaps, DirTable, DirVip, DirVipEntry, names},
};

/// `SY_DIR_SLOT_OVERFLOW`: some VIP of this home slot lives in the overflow hash.
pub const SLOT_OVERFLOW: u32 = 1;

/// `struct sy_dir_vip_slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct VipSlot {
    /// The VIP whose home this is; family 0: none.
    pub key: FrontendKey,
    /// Its entry.
    pub vip: DirVipEntry,
    /// [`SLOT_OVERFLOW`].
    pub flags: u32,
    /// Zero.
    pub pad: u32,
}

// SAFETY: plain `#[repr(C)]` data without padding holes (checked by tests/layout_director.rs).
unsafe impl aya::Pod for VipSlot {}

/// Entries of `sy_dir_vip_slots` for a VIP capacity: a power of two, at least twice the
/// capacity (at most half full, so few VIPs share a home), at least 2.
pub fn vip_slots(capacity: u32) -> u32 {
    capacity.saturating_mul(2).max(2).checked_next_power_of_two().unwrap_or(1 << 31)
}

/// `sy_dir_config.vip_slot_shift` for an array of `slots` entries (a power of two).
pub fn vip_slot_shift(slots: u32) -> u32 {
    32 - slots.max(2).trailing_zeros()
}

/// `sy_dir_vip_slot_of`: the home slot of `key` among `2^(32 - shift)` slots.
pub fn vip_slot_of(key: &FrontendKey, shift: u32) -> u32 {
    let a = key.addr.0;
    let word = |i: usize| u32::from_le_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    // The fifth word as the program loads it (little-endian): port (network order), proto,
    // family.
    let port = key.port.to_ne_bytes();
    let w4 = u32::from_le_bytes([port[0], port[1], key.proto, key.family]);
    let x = (word(0) ^ word(4) ^ word(8) ^ word(12)).wrapping_mul(0x9e37_79b1);
    (x ^ w4).wrapping_mul(0x9e37_79b1) >> (shift & 31)
}

/// Removes `key` from the overflow; a key that is not there is fine (the kernel says ENOENT).
fn remove_overflow(
    vips: &mut aya::maps::HashMap<aya::maps::MapData, FrontendKey, DirVipEntry>,
    key: &FrontendKey,
) -> Result<bool, Error> {
    match vips.remove(key) {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(source) => Err(overflow_err(source)),
    }
}

/// The cluster seed `config` holds.
fn seed_of(config: &DirConfig) -> switchyard_maglev::Seed {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&config.hash_k0.to_le_bytes());
    bytes[8..].copy_from_slice(&config.hash_k1.to_le_bytes());
    switchyard_maglev::Seed::from_bytes(bytes)
}

fn slots_err(source: MapError) -> Error {
    Error::Map { name: names::VIP_SLOTS, source }
}

fn overflow_err(source: MapError) -> Error {
    Error::Map { name: names::VIPS, source }
}

impl DirMaps {
    /// The shift of this map set's slot array.
    pub fn vip_slot_shift(&self) -> u32 {
        vip_slot_shift(self.vip_slots.len())
    }

    /// The home slot of `key` in this map set.
    pub fn home_slot(&self, key: &FrontendKey) -> u32 {
        vip_slot_of(key, self.vip_slot_shift())
    }

    fn slot(&self, index: u32) -> Result<VipSlot, Error> {
        self.vip_slots.get(&index, 0).map_err(slots_err)
    }

    fn set_slot(&mut self, index: u32, slot: VipSlot) -> Result<(), Error> {
        self.vip_slots.set(index, slot, 0).map_err(slots_err)
    }

    /// Writes `key` and `vip` into the empty slot `index` (keeping its flags): family 0
    /// first, then the family.
    fn fill_slot(
        &mut self,
        index: u32,
        key: FrontendKey,
        vip: DirVipEntry,
        flags: u32,
    ) -> Result<(), Error> {
        let mut slot = VipSlot { key, vip, flags, pad: 0 };
        slot.key.family = 0;
        self.set_slot(index, slot)?;
        slot.key.family = key.family;
        self.set_slot(index, slot)
    }

    /// The overflow VIPs whose home is `index`.
    fn overflow_homed(&self, index: u32) -> Result<Vec<(FrontendKey, DirVipEntry)>, Error> {
        let shift = self.vip_slot_shift();
        let mut out = Vec::new();
        for entry in self.vips.iter() {
            let (key, vip) = entry.map_err(overflow_err)?;
            if vip_slot_of(&key, shift) == index {
                out.push((key, vip));
            }
        }
        Ok(out)
    }

    /// Creates VIP `key` or re-points it (`vip.table_id`; one aligned word changes, so the
    /// swap of its table is atomic for the program). The entry gets the flow hash's state
    /// after the VIP's words under the configured seed (the same bytes again on a re-point).
    pub fn put_vip(&mut self, key: FrontendKey, vip: DirVip) -> Result<(), Error> {
        if key.family == 0 {
            return Err(Error::InvalidArgument("director VIP key without a family".into()));
        }
        let vip = DirVipEntry::new(vip, &seed_of(&self.config()?), &key);
        self.put_vip_entry(key, vip)
    }

    fn put_vip_entry(&mut self, key: FrontendKey, vip: DirVipEntry) -> Result<(), Error> {
        let index = self.home_slot(&key);
        let mut slot = self.slot(index)?;
        if slot.key == key {
            return self.set_slot_vip(index, slot, vip);
        }
        match self.vips.get(&key, 0) {
            Ok(_) => return self.vips.insert(key, vip, 0).map_err(overflow_err),
            Err(MapError::KeyNotFound) => {}
            Err(source) => return Err(overflow_err(source)),
        }
        if slot.key.family == 0 {
            return self.fill_slot(index, key, vip, slot.flags);
        }
        // The home holds another VIP: the overflow first, then the flag that sends the
        // program there.
        self.vips.insert(key, vip, 0).map_err(overflow_err)?;
        if slot.flags & SLOT_OVERFLOW == 0 {
            slot.flags |= SLOT_OVERFLOW;
            self.set_slot(index, slot)?;
        }
        Ok(())
    }

    /// Removes VIP `key` (missing is fine). A VIP of the same home in the overflow moves into
    /// the freed slot.
    pub fn delete_vip(&mut self, key: &FrontendKey) -> Result<(), Error> {
        let index = self.home_slot(key);
        let mut slot = self.slot(index)?;
        if slot.key == *key && key.family != 0 {
            slot.key.family = 0;
            self.set_slot(index, slot)?;
            let homed = self.overflow_homed(index)?;
            let Some(&(next, vip)) = homed.first() else {
                return self.set_slot(index, VipSlot::default());
            };
            // Make-before-break: in the slot (the overflow flag still set), then out of the
            // overflow, then the flag once no other VIP of this home is there.
            self.fill_slot(index, next, vip, SLOT_OVERFLOW)?;
            remove_overflow(&mut self.vips, &next)?;
            if homed.len() == 1 {
                let mut slot = self.slot(index)?;
                slot.flags = 0;
                self.set_slot(index, slot)?;
            }
            return Ok(());
        }
        if !remove_overflow(&mut self.vips, key)? {
            return Ok(());
        }
        if slot.flags & SLOT_OVERFLOW != 0 && self.overflow_homed(index)?.is_empty() {
            slot.flags = 0;
            self.set_slot(index, slot)?;
        }
        Ok(())
    }

    /// The program's VIP lookup: the home slot's VIP, else the overflow's when the slot says.
    pub fn vip(&self, key: &FrontendKey) -> Result<Option<DirVip>, Error> {
        Ok(self.vip_entry(key)?.map(|entry| entry.vip()))
    }

    /// [`DirMaps::vip`] with the flow hash prefix as stored.
    pub fn vip_entry(&self, key: &FrontendKey) -> Result<Option<DirVipEntry>, Error> {
        let slot = self.slot(self.home_slot(key))?;
        if slot.key == *key && key.family != 0 {
            return Ok(Some(slot.vip));
        }
        if slot.flags & SLOT_OVERFLOW == 0 {
            return Ok(None);
        }
        match self.vips.get(key, 0) {
            Ok(vip) => Ok(Some(vip)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(overflow_err(source)),
        }
    }

    /// Every VIP, in the slots and in the overflow (a restarted director adopts them).
    pub fn vip_entries(&self) -> Result<Vec<(FrontendKey, DirVip)>, Error> {
        Ok(self.vip_map_entries()?.into_iter().map(|(key, entry)| (key, entry.vip())).collect())
    }

    /// Every VIP's map value, in the slots and in the overflow.
    pub fn vip_map_entries(&self) -> Result<Vec<(FrontendKey, DirVipEntry)>, Error> {
        let mut out = Vec::new();
        for index in 0..self.vip_slots.len() {
            let slot = self.slot(index)?;
            if slot.key.family != 0 {
                out.push((slot.key, slot.vip));
            }
        }
        for entry in self.vips.iter() {
            out.push(entry.map_err(overflow_err)?);
        }
        Ok(out)
    }

    /// Rewrites the flow hash prefix of every VIP whose prefix was made under another key
    /// than the configured one (a changed seed; VIPs written before the config; a restart
    /// with another seed adopting the pinned VIPs). Until then the program hashes those VIPs'
    /// flows from scratch (correct, only slower).
    pub fn refresh_flow_prefixes(&mut self) -> Result<usize, Error> {
        let config = self.config()?;
        let seed = seed_of(&config);
        let mut rewritten = 0;
        for (key, entry) in self.vip_map_entries()? {
            if entry.hash.made_under(&config) {
                continue;
            }
            self.rewrite_vip_entry(&key, DirVipEntry::new(entry.vip(), &seed, &key))?;
            rewritten += 1;
        }
        Ok(rewritten)
    }

    /// Writes the value of VIP `key` where it lives (its home slot or the overflow).
    fn rewrite_vip_entry(&mut self, key: &FrontendKey, entry: DirVipEntry) -> Result<(), Error> {
        let index = self.home_slot(key);
        let slot = self.slot(index)?;
        if slot.key == *key {
            return self.set_slot_vip(index, slot, entry);
        }
        self.vips.insert(*key, entry, 0).map_err(overflow_err)
    }

    /// Gives the VIP in slot `index` the value `vip`. An array value is copied in place, not
    /// swapped, so a reader could see part of a new flow hash prefix: when the prefix changes
    /// (another seed), it is written first with both key words flipped (a key the program
    /// never uses, so it hashes from scratch meanwhile), then with its key.
    fn set_slot_vip(
        &mut self,
        index: u32,
        mut slot: VipSlot,
        vip: DirVipEntry,
    ) -> Result<(), Error> {
        if slot.vip.hash != vip.hash {
            slot.vip = vip;
            slot.vip.hash.k0 = !vip.hash.k0;
            slot.vip.hash.k1 = !vip.hash.k1;
            self.set_slot(index, slot)?;
        }
        slot.vip = vip;
        self.set_slot(index, slot)
    }

    /// How many VIPs live in the overflow hash (tests, status).
    pub fn overflow_vips(&self) -> usize {
        self.vips.keys().count()
    }

    /// Repeats the program's lookup for a flow (client -> VIP): the VIP, the flow hash of the
    /// 5-tuple under the configured seed (from scratch: the program's prefix gives the same
    /// value, or is not used), the slot, the node. `None` when the destination is no VIP.
    pub fn lookup(&self, flow: &switchyard_maglev::FlowKey) -> Result<Option<DirLookup>, Error> {
        let key = FrontendKey::new(flow.destination, flow.destination_port, flow.protocol, 0);
        let Some(vip) = self.vip(&key)? else { return Ok(None) };
        let config = self.config()?;
        let hash =
            flow.hash(&seed_of(&config)).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mut out = DirLookup { vip, hash, slot: None, node: None };
        if vip.table_id == 0 || config.table_size == 0 {
            return Ok(Some(out));
        }
        let map_err = |source| Error::Map { name: names::TABLES, source };
        let table: DirTable = match self.tables.get(&vip.table_id, 0) {
            Ok(table) => table,
            Err(MapError::KeyNotFound | MapError::OutOfBounds { .. }) => return Ok(Some(out)),
            Err(source) => return Err(map_err(source)),
        };
        let slot = (hash % u64::from(config.table_size)) as u32;
        out.slot = Some(slot);
        let node_id = table.get(&slot, 0).map_err(map_err)?;
        out.node = self.node(node_id)?.map(|node| (node_id, node));
        Ok(Some(out))
    }
}
