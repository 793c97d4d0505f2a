//! `switchyard explain`: placeholder replaced below.
