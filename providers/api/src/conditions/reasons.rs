//! The reasons tether gives its conditions and Events, in one place: users match on
//! them (`kubectl wait`, alerts on Events), so they change only as a breaking change.
//!
//! A reason names what happened in CamelCase. Readiness reasons a provider derives from
//! the cloud's own state (e.g. `ShuttingDown`) stay with that provider.

/// `Ready` holds: the cloud resource is ready to use.
pub const AVAILABLE: &str = "Available";
/// Event: the cloud resource became ready to use.
pub const READY: &str = "Ready";
/// `Synced` holds: the last reconcile succeeded.
pub const RECONCILE_SUCCESS: &str = "ReconcileSuccess";
/// `Ready` while the cloud makes the resource; Event when a claim's object is made.
pub const CREATING: &str = "Creating";
/// Event: the create was sent (or a claim's object was made).
pub const CREATED: &str = "Created";
/// Event: an update was sent.
pub const UPDATED: &str = "Updated";
/// `Ready` and Event while the cloud deletes the resource: the delete was sent.
pub const DELETING: &str = "Deleting";
/// Event: the delete was sent.
pub const DELETION_STARTED: &str = "DeletionStarted";
/// Event: the cloud resource is gone.
pub const DELETED: &str = "Deleted";
/// `Ready` while a deletion waits for the cloud to show what a create made, to delete
/// it then.
pub const WAITING_TO_DELETE: &str = "WaitingToDelete";
/// `Ready` and `Synced` for a resource that is someone else's.
pub const NOT_OWNED: &str = "NotOwned";
/// `Ready` and `Synced` for a resource another live object owns.
pub const OWNED_BY_ANOTHER: &str = "OwnedByAnother";
/// `Synced` while the object carries `tether.dev/paused`.
pub const RECONCILE_PAUSED: &str = "ReconcilePaused";
/// `Synced` while a deleted object carries `tether.dev/paused`.
pub const DELETION_PAUSED: &str = "DeletionPaused";
/// `Ready` in observe-only mode when there is no such resource.
pub const NOT_FOUND: &str = "NotFound";
/// Event: a resource seen after its create went missing again.
pub const GONE_AFTER_CREATE: &str = "GoneAfterCreate";
/// Event: a deletion found no resource with the object's UID tag after the create
/// grace, and lets the object go.
pub const NOT_FOUND_AFTER_CREATE: &str = "NotFoundAfterCreate";
/// Event: a deleted object let go of its cloud resource and left it in place: the
/// deletion policy says `Retain`, the object only observes it, or it never owned it.
pub const RETAINED: &str = "Retained";
/// Event: the CustomResourceDefinition went, and the cloud resource was left alone.
pub const LEFT_IN_CLOUD: &str = "LeftInCloud";
/// `Synced` while a referenced object is not ready.
pub const REFERENCE_NOT_READY: &str = "ReferenceNotReady";
/// Event: a login's password was rotated.
pub const PASSWORD_ROTATED: &str = "PasswordRotated";
/// Event: the login a rotation switched away from was retired.
pub const LOGIN_RETIRED: &str = "LoginRetired";
/// Event: the master password was renewed.
pub const MASTER_PASSWORD_RENEWED: &str = "MasterPasswordRenewed";

/// `Synced` when an annotation of tether's does not parse.
pub const INVALID_ANNOTATION: &str = "InvalidAnnotation";
/// `Synced` when the provider could not be reached or configured.
pub const CONNECT_FAILED: &str = "ConnectFailed";
/// `Synced` when observing the cloud resource failed.
pub const OBSERVE_FAILED: &str = "ObserveFailed";
/// `Synced` when preparing credentials failed.
pub const PREPARE_FAILED: &str = "PrepareFailed";
/// `Synced` when the create failed.
pub const CREATE_FAILED: &str = "CreateFailed";
/// `Synced` when an update failed.
pub const UPDATE_FAILED: &str = "UpdateFailed";
/// `Synced` when the delete failed.
pub const DELETE_FAILED: &str = "DeleteFailed";
/// `Synced` when a password rotation failed.
pub const ROTATE_FAILED: &str = "RotateFailed";
/// `Synced` when the connection Secret's name is taken by a Secret tether does not own.
pub const SECRET_CONFLICT: &str = "SecretConflict";
/// `Synced` when writing the connection Secret failed.
pub const SECRET_WRITE_FAILED: &str = "SecretWriteFailed";
/// `Synced` when a Kubernetes call failed.
pub const KUBERNETES_ERROR: &str = "KubernetesError";

/// A claim names a class that does not exist or is being deleted.
pub const CLASS_NOT_FOUND: &str = "ClassNotFound";
/// A claim asks for what its class does not allow.
pub const NOT_ALLOWED: &str = "NotAllowed";
/// A claim would exceed its namespace's quota.
pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
/// `ClassChanged` does not hold: the claim's object matches its class.
pub const UP_TO_DATE: &str = "UpToDate";
/// Event: a claim's class changed.
pub const CLASS_CHANGED: &str = "ClassChanged";
/// `ClassChanged` holds: the class changed in ways that wait for the claim to change.
pub const CHANGES_WAITING: &str = "ChangesWaiting";
/// Event: a deleted claim's object was left in place.
pub const LEFT_IN_PLACE: &str = "LeftInPlace";
/// A class or ProviderConfig is still used by objects.
pub const IN_USE: &str = "InUse";
/// A ProviderConfig being deleted waits for the objects that use it.
pub const DELETION_WAITING: &str = "DeletionWaiting";
