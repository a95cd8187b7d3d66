//! Helpers for the compact copies the shared snapshots keep of what AWS describes
//! (`rds::db_instance::kept`, `ec2::instance::kept`).

/// A borrowed optional string, owned.
pub(crate) fn owned(value: Option<&str>) -> Option<String> {
    value.map(str::to_owned)
}

/// A list as AWS leaves it out when it is empty.
pub(crate) fn listed<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}
