"""The seams between parts, as ``zope.interface`` interfaces.

Protocol code and API code meet only through these: the API never touches
bytes and the device side never touches HTTP.  Methods documented as
returning ``Deferred[X]`` always return a Deferred, even in the in-memory
implementations, so callers are written once.
"""

from zope.interface import Attribute, Interface


class IUserStore(Interface):
    """Users and their password hashes."""

    def add_user(user):
        """Store a new :class:`~twisted_spark.models.User`.

        :rtype: Deferred[User]; fails with DuplicateUser if the name is taken.
        """

    def get_user(username):
        """:rtype: Deferred[User | None]"""

    def list_users():
        """:rtype: Deferred[list[User]] sorted by username."""

    def count_users():
        """:rtype: Deferred[int]"""


class ITokenStore(Interface):
    """OAuth access tokens."""

    def add_token(token):
        """Store an :class:`~twisted_spark.models.AccessToken`. :rtype: Deferred[AccessToken]"""

    def get_token(token):
        """:rtype: Deferred[AccessToken | None] (expired tokens are returned too)."""

    def list_tokens(username):
        """:rtype: Deferred[list[AccessToken]] of that user, oldest first."""

    def delete_token(token):
        """:rtype: Deferred[bool], True if a token was removed."""

    def delete_expired(now):
        """Remove tokens that expired before ``now``. :rtype: Deferred[int]"""


class IDeviceStore(Interface):
    """What is remembered about devices: owner, name, key, attributes.

    Names are unique per owner: no write may leave one owner with two
    devices whose ``name`` is equal (compared exactly, case counts).
    Devices without an owner or without a name are not constrained.  A
    write that would break the rule fails with
    :class:`~twisted_spark.store.NameTaken` (a ``ConstraintError``) and
    changes nothing; it must hold under concurrent writers too (a unique
    index on ``(owner, name)``, not only a check before writing).
    """

    def get_device(device_id):
        """:rtype: Deferred[DeviceRecord | None]"""

    def list_devices(owner=None):
        """All devices, or those of ``owner``. :rtype: Deferred[list[DeviceRecord]] by id."""

    def put_device(record):
        """Insert or replace a whole record.

        :rtype: Deferred[DeviceRecord]; fails with NameTaken or ConstraintError.
        """

    def update_device(device_id, **changes):
        """Change some fields of a device, creating the record if absent.

        :rtype: Deferred[DeviceRecord] (the record after the change); fails
            with NameTaken, ConstraintError (unknown owner) or TypeError
            (unknown field).
        """

    def update_device_if(device_id, expected, **changes):
        """Compare-and-set: apply ``changes`` only if the device still has the
        ``expected`` field values (``{field: value}``).

        The comparison and the write are one atomic step (one transaction
        holding the row against other writers): of two callers that read the
        same state and then both try to change it, exactly one succeeds.  This
        is how claim, release, provisioning and rename stay correct when two
        requests race.  A device with no record counts as
        ``DeviceRecord(device_id)`` (no owner, no name, no key...), so
        ``expected={"owner": None}`` matches a missing device and the write
        then creates it, as ``update_device`` does.  ``expected={}`` is
        ``update_device``.

        :rtype: Deferred[DeviceRecord] (the record after the change); fails
            with :class:`~twisted_spark.store.DeviceChanged` (its ``current``
            is the record as it is, or ``None``) when a field differs, and
            changes nothing; otherwise as :meth:`update_device`.
        """

    def delete_device(device_id):
        """:rtype: Deferred[bool]"""


class IDtlsSessionStore(Interface):
    """Gen3 DTLS sessions by connection ID, so sleeping devices resume across restarts.

    A separate interface from :class:`IStore`: the UDP device port needs it,
    nothing else does.  Records are
    :class:`~twisted_spark.models.DtlsSessionRecord`; an expired one
    (``expires_at <= now``) is never returned.
    """

    def save_dtls_session(record):
        """Insert or replace the session with ``record.cid``. :rtype: Deferred[DtlsSessionRecord]"""

    def get_dtls_session(cid, now):
        """The unexpired session with this CID. :rtype: Deferred[DtlsSessionRecord | None]"""

    def delete_dtls_session(cid):
        """:rtype: Deferred[bool], True if a session was removed."""

    def delete_expired_dtls_sessions(now):
        """Remove sessions with ``expires_at <= now``. :rtype: Deferred[int] (how many)"""


class IStore(IUserStore, ITokenStore, IDeviceStore):
    """Everything persistent, in one place that can be opened and closed."""

    def close():
        """Release the database. :rtype: Deferred[None]"""


class IDeviceSession(Interface):
    """A live, handshaken connection to one device."""

    device_id = Attribute("24 lowercase hex characters")
    platform_id = Attribute("int or None (Core Hello has none; 0 is assumed)")
    product_id = Attribute("int or None")
    firmware_version = Attribute("int or None")
    remote_ip = Attribute("str, the peer address")
    functions = Attribute("tuple of function names from the cached Describe")
    variables = Attribute("dict of variable name -> type name from the cached Describe")
    owner = Attribute("username of the device's owner, or None")
    connected = Attribute("bool: False once the connection is gone")
    busy = Attribute("bool: True while flashing; other calls then fail with DeviceBusy")
    subscriptions = Attribute("list of (prefix, my_devices, device_id) the device asked for")

    def send_request(build, timeout):
        """Send a request built by ``build(message_id, token)`` and wait for its answer.

        :rtype: Deferred[CoapMessage] firing with the response matched by token.
        """

    def invalidate_describe():
        """Forget the cached Describe (after an update), so it is asked again."""

    def describe():
        """Ask the device for its functions and variables (cached).

        :rtype: Deferred[dict] with keys ``functions`` and ``variables``.
        """

    def call_function(name, argument):
        """Call a device function with ``argument`` (bytes).

        :rtype: Deferred[int]; fails with UnknownFunction, DeviceTimeout,
            DeviceNotConnected, ArgumentTooLong or DeviceBusy.
        """

    def read_variable(name):
        """:rtype: Deferred[bool | int | float | str] typed by the Describe."""

    def signal(on):
        """Start or stop the rainbow LED. :rtype: Deferred[bool]"""

    def ping():
        """CoAP ping; :rtype: Deferred[bool] (True if the device answered)."""

    def send_event(event):
        """Deliver a :class:`~twisted_spark.models.Event` to the device (no reply)."""

    def disconnect(reason):
        """Close the connection, failing every pending request."""


class IDeviceRegistry(Interface):
    """The table of online sessions, by device id."""

    def get(device_id):
        """The online :class:`IDeviceSession` for ``device_id``, or ``None``."""

    def online_ids():
        """A set of the ids of the devices online now."""

    def add_observer(observer):
        """Call ``observer.device_online(session)`` and ``observer.device_offline(session)``."""

    def remove_observer(observer):
        """Stop notifying ``observer``."""

    def sessions():
        """A list of the online sessions."""


class IEventBus(Interface):
    """Publish/subscribe of :class:`~twisted_spark.models.Event`."""

    def publish(event):
        """Deliver ``event`` to every matching subscriber; never raises."""

    def subscribe(prefix, callback, accepts=None):
        """Call ``callback(event)`` for each event whose name starts with ``prefix``
        and for which ``accepts(event)`` (a visibility rule) is true.

        :return: a subscription with a ``cancel()`` method.
        """
