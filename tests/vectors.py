"""PROTOCOL.md §13 test vectors, as constants shared by the crypto and CoAP tests.

Every byte string here was copied from PROTOCOL.md §13 (itself taken from the
core-communication-lib unit tests and re-verified).  ``Frame.plaintext`` is
the CoAP message WITHOUT its PKCS#7 padding; the padding is what the
channel adds and strips.
"""

from __future__ import annotations

from typing import NamedTuple


class Frame(NamedTuple):
    """One encrypted frame: the IV it was encrypted with, its body, its CoAP bytes."""

    name: str
    iv: bytes
    ciphertext: bytes
    plaintext: bytes


def h(text: str) -> bytes:
    """bytes from hex, ignoring spaces."""
    return bytes.fromhex(text.replace(" ", ""))


# -- 13.1 handshake crypto (tests/TestHandshake.cpp) ----------------------------------

HS_NONCE = bytes.fromhex(
    "5d6041d167bf18af1ddaa47c188392a104deb0ffb9922a12a6289c603e4feb35"
    "8c18f9a18a610da4"
)

HS_DEVICE_ID = bytes.fromhex("1a118ad1c886d54240ce4b17")

HS_SERVER_PUBLIC_DER = bytes.fromhex(
    "30820122300d06092a864886f70d01010105000382010f003082010a02820101"
    "00bba08a8da3c5502a8d7de60b6e393714f54ae2e7a3652e50184db82e83879c"
    "ec4ff448bd228515d877ddfb9869b477f5ee37fbffa4ae583d056f0443fa4f29"
    "7a568a01ecf2acb8ac8a9f7c31a3c0f2b248f1f07eb05b2033343c98aee7c68e"
    "13bc1d3a9ea2688e7b9d12704c5ae3de8ed6e2fca3da36efea5f3ebfc5873d93"
    "23c9b92f4d67fb3faf8785c9452c25848203385d2e7b8a75fdb18ce718e37106"
    "0a96d881b0ab21319b3a2608e2e824c4d88841e9178452630648d689deb508da"
    "2e617187ba262fe0025a8597332762a5399cf482faef9a4a97c03d3affae1b8d"
    "e55e6bdb7f77fb0cb48054804449e23b2d1e232e684fdad6b0c8da2d37df4a00"
    "8b0203010001"
)

HS_DEVICE_PRIVATE_DER = bytes.fromhex(
    "3082025b02010002818100a87cf2b1660b5bfbd97d623aa00675c1d4122f67f9"
    "c310879fc79b9170e5468e27530680cc09ee77777f55ecabaf63d7bdd80b4d04"
    "01b90ddd0d87255a1239549081ce073bdc4701a6e6d954ce71a5bd53481eb410"
    "ec6abe94f0cd28d576060f028011168fefbb4cfadaa8482464d1a1922fb94de4"
    "3238d25ce230c15edbd8a1020301000102818014e2c842ed5f631ba92e3dcafe"
    "a34e5da4a84c701b29ef16a0dbe190f9e9b2015526999bc5af457c51b7db32e7"
    "656a7f07ed8c1913f212ba813878144d420d1116f7d5aafb4c24e856d8cb2537"
    "ec3d20f3ceda09dc8cc03035c73ffa2c9a466ded823d08c7d706d19c7f5a9124"
    "237b9aea125dc04b2acc5eb90c4dbd751e5cf1024100db453537cb27565aa81d"
    "3d4a28b9f7d310df14475f2e13c50235140dfc89fee585db6542152ba2f46e3b"
    "78bfc6ac9d52c02827e85cc89150d161a61959f0fb07024100c4b615e2b1e678"
    "434ce689934f94fbc62e3fc3f136a3d8c5b4c865fed8c822a23dbdac9e0000c4"
    "0036603127dafd696c83b6e767033801b50d9cd06e332e9d17024071e116cb9c"
    "5a18d24a9facf63802a5c05bf1d001656073ea0cc46e5ef93ade446c69cec42c"
    "649664665fc2cdaf2c7524c621d4e02c580a88b3c60853005054bf0240729495"
    "7eec9d10643340fdd5debf2b40aee3d9a0817142ed36769c62aba737f544fd5c"
    "b4d3cf9e5b7950e2911290157e6de2763b9cb65cd8374ba664ea4f3695024007"
    "fea4f4b7f4d66f45e5a952c6d2dd6b0ca248362233371be305a02fdcd9b3db91"
    "6ddab36ad668160813c3bee068c5bf8ec0272063f6af95487374578f403f80"
)

HS_C = bytes.fromhex(
    "3cb15f90c9aefbdcf044b36303559e672ac0fe901a8ab9e116fb908d3c8c29b5"
    "3de2a2894b60cf2d72d8ffec9b916c86349b3ce1eae44340178a0a009ac07f32"
    "e56556a5a836c186d8057701bfb66d2933e46dd03ca03ad4cbea4aad66960541"
    "9107fe8a656fbac7fa73a34091bc18f65c9e4bd36476d84e6dfb571e54145152"
)

HS_SESSION = bytes.fromhex(
    "3e78eb7a0bb21dfbf2b1534b06e56612145a01f1070e40a11188f784c49bc653"
    "c57694fc1f3b7d72"
)

HS_HMAC = bytes.fromhex("34a47a49b4f4bed37495a5fc0b3e0f414ae6b92b")

HS_S = bytes.fromhex(
    "13a4315a2818896ab9f3c1b92933c59314d796aa382ac112e867e99456d1cc16"
    "a4a44bd201a8c5525baf8d3867c60d3a21ec14ca912933d1bc9f4105e1b02bb6"
    "1655babc7d715be9cbe6f1305e9964768d7621d15ba103caf6ea715c1d3daa54"
    "3844e7c95c82e3b018f649bc9109364b0f06adb84228213c3026423f1a437d85"
    "fb404d95df50cd73972871d1f97ed1b1f5aa5e4db74fb4d575628da20f697a3b"
    "a9048cb9f1c2a73392ba539c0f5c10404999a803b212ad28eef06486b9408bb9"
    "9745b21d893c2ae9397588117b6d8fe990305d7321b6bcfd5ba72feb4b188813"
    "6abe0bc6a5c6dac7c87e0148faff52d7cb1b6452610114312d572b1beea46570"
)


# -- 13.2 "CoAPFixture" session (tests/TestCoAP.cpp): every frame uses the initial IV ---

FIXTURE_SESSION = h(
    "508e8afd7873233867d656c0ca46048e 0abb06e39bc57e2c9bce0bdfc552c82d f6480d23c50e2d6d"
)
FIXTURE_KEY = FIXTURE_SESSION[:16]
FIXTURE_IV = FIXTURE_SESSION[16:32]
FIXTURE_DEVICE_MID_SEED = 0xF648
FIXTURE_DEVICE_TOKEN_SEED = 0x0D

CHUNK_TEXT = b"not actually a valid firmware data chunk payload, but the header is fine"
DESCRIBE_JSON = b'{"f":["brew"],"v":{"temperature":2}}'
LONG_STRING = (
    b"Hey, wow, this is like a super long string. It just goes on and on and on... "
    b"I just like don't know why anyone tries to send things like this in a constrained "
    b"environment, but whatevs. Peeps be thinkin' outside the box."
)

LONG_STRING_CIPHERTEXT = bytes.fromhex(
    "9dba43c4cda6e627777835499acd767b53166ac863aee50031b0eee719d126ea"
    "f95db6d46ad7328d10a2dc30d31dbe1f936165a4169f3118acac91f2163d15c7"
    "7aa89a99bc648369ffb3ac9dda1875f96c5521ce6ba9b48346190e8e8b1e8e25"
    "9b206f3457c54bd26c6b5f560ec49fbfe4e881e2c3debccd901990393c8fddef"
    "1c1b6b00a318767aaebd98dcf84c61afb917a1c6b27fe7a6ca23afbe78a8ff5a"
    "e1de5e9a5e8e3150f91003947dfc4e191507afbc7072a4e209ddbc6ce66fa381"
    "520e3c55289f3a2c6a149ef9b45d54b24194e251886e5a043d3a8c036a77f004"
    "414420df241d8f183e8d3f0291f0795c"
)

_FIXTURE = [
    # server -> device
    ("function_call", "d7d11c1c2dde7d0942490d4b4f4419c317000fcfb258852ddb2df7f81561259b",
     h("4102abcdefb16604627265774633322c323430")),
    ("variable_request_malformed",
     "284039272a1b3fb3fa1cb3836625c5baf87398c3e68e7c34eab88cec2bd525b0",
     h("4101abce88b1760c0474656d7065726174757265")),
    ("update_begin", "322865775beea808a9c62f76441aff91", h("4102abd033b175")),
    ("chunk",
     "59e4eac2e24b0deedc0f9c080221a8b3cce4e2a87ee49ac3d6144a8b2fcf45ee"
     "c814135017bad614caa0f55440fc1fe29bd0d56d59eee5c621195d0d12cf9d48"
     "d6757b236e31b7857e3dab547d273270a2081cb199def1635a3392dbe3c5df6d",
     h("4102abd122b1634401234567ff") + CHUNK_TEXT),
    ("update_done", "5cc28064ac11f4333282057a9e8fad2a", h("4103abd211b175")),
    ("describe", "d5b7f7fe9f2dcaacda1510a3278ba7a9", h("4101f64928b164")),
    ("server_hello", "895feb1807ba1dbf1126550475282aef", h("5002f649b168")),
    # device -> server
    ("device_hello", "3dc4a421b8309b9dc84b700733c1ff3e", h("5002f649b168ff ffff ffff 00 00")),
    ("key_changed", "676433a95812ca375f12593b3e3264d3", h("5144f64999")),
    ("function_return_42", "739ba0ada9ff013dcdc318e43e5a92e6", h("5144f649c3ff0000002a")),
    ("variable_bool_false", "ae3585d56bc06dd0d62575b9d29c3642", h("6145f6495fff00")),
    ("variable_int", "be47346285c07b9221c89ac49196f5f6", h("614597b288fffffe7e33")),
    ("variable_double", "00063db5ccdaf9ce81260197bb648d97", h("6145abce5dfff4fdd478e9365ac0")),
    ("variable_string", "892118c6352fe7a0eb6f7b0bb631a212", h("6145f6495cff776f6f74")),
    ("chunk_received_ok", "26036a648bbac742c9fa787bf9255101", h("5144f64901")),
    ("update_ready", "f8e2f5c550a31203d0a0f998e5485871", h("5144f64910")),
    ("describe_response",
     "acc98f762676c953f5c22a2070e660285aa095151c4adc5319bf95446ce55059"
     "f926d404369b97ef4de745c6ce13b35d",
     h("6145f64966ff") + DESCRIBE_JSON),
    ("variable_long_string", LONG_STRING_CIPHERTEXT.hex(), h("6145f6495cff") + LONG_STRING),
]
FIXTURE = {name: Frame(name, FIXTURE_IV, h(ct), pt) for name, ct, pt in _FIXTURE}

AES_CHECK_PLAINTEXT = b"Super secret message\n"
AES_CHECK_CIPHERTEXT = h("cf0507476764158c7b63d04c9d17e012c2c184105bdd5e36b8ad8f61db7e85d1")


# -- 13.3 "ConstructorFixture" transcript --------------------------------------------

CF_NONCE = h("31e830246f2d7d987c42477ef033f424ff62d382b17a0931130b236398de90847141f5830484177b")
CF_DEVICE_ID = h("54e1c888f6d9492bebee1ee9")
CF_BLOB = bytes.fromhex(
    "0bad1922b660f4c7b4ea34d9bfbb31dc1a6099d857f54a88c75c612f9159e9e6"
    "9e6b1f86cf83e3e5e78f7b891263eca285a7871141c2e0a15c4fd31d23dd19f5"
    "38b06c4b70e42631e616812a8280a6e0783ee3deb2290f817248276e480113ed"
    "ff098dfcbba2465cb207dc8d58368ba821a65dac6e6ef08e395ad37165926bf0"
    "9e27751379a7cdad74f8afa44dda111d0a8fe77bfcb71a454588017e86033d75"
    "e2379c3d2651593f73f73644d1b76c59720ee9421048e0a0b53f1135d25c6f55"
    "9813afef0cfe2d36b96320d76981e8ab2e780afd275b4ec91f1ac1fb06868e63"
    "a3e5dc970509165ad2541ca01667534cfb306ab6854e9611cfa1c4854f1bb5d6"
    "8a91ea26d1a7d025589305932bec93d2cd963d03f4eb809e173e64b2a1a895b8"
    "e5b0c9d839da1832c1c7f88562ba8f2e45a241312f26445ba6a44d70cdc0fb8b"
    "686aba0ee0d5f428316cc7e540306ac1ee2f3fa674813da1dcba34e4c744583f"
    "0c99d0cdc0c04a9f1095504909ce09e2f7bd882eae86cd191eac3a0eb2291b6b"
)
CF_SESSION = h("ead9e1e2014903b9e76632f6fa5afa66 9522a567e100cd3cfe5215473921b63d 97b197250038fa09")
CF_KEY = CF_SESSION[:16]
CF_IV0 = CF_SESSION[16:32]
CF_DEVICE_MID_SEED = 0x97B1
CF_DEVICE_TOKEN_SEED = 0x97

CF_HELLO_FRAME = h("0010 de896027ba111a95be396f4dfc309b6b")  # with its length prefix
HELLO_CT = CF_HELLO_FRAME[2:]
ACK_CT = h("80ef0849d1bee320f506f97df1ce2536")
UPDATE_ACK_CT = h("108ab83f2dbffb183d5bf16db3fb464d")
UPDATE_READY_CT = h("69d70483e74921da83a8e432552f21cb")
CHUNK_ACK_CT = h("4da21a09c0d7223690f7256370b888e3")

ARG_63 = b"This is a string argument - whose length is exactly sixty-three"
ARG_64 = b"This is a string argument :-) whose length is exactly sixty-four"
FIREHOSE_PREFIX = b"a/really_long/event-name-filter/actually/as/long-as-one-can-be!"

_TRANSCRIPT = [
    ("device_hello", CF_IV0, HELLO_CT, h("500297b2b168ffffffffff0000")),
    ("describe", CF_IV0, "4d2b016f13eededcaf7923fb7681b37a", h("410197b228b164")),
    ("describe_reply", HELLO_CT,
     "8c757e24f756de78d84f1980a8e0d184b0960094769211c884f5956ae4162161"
     "10f5e51af1780b756aed83c5e05d5c5a",
     h("614597b228ff") + DESCRIBE_JSON),
    ("function_call", CF_IV0,
     "c6f4cb2885d81edd231c56b8d8032894ce89ab4248867876a0140723b5a9fe75",
     h("410297b2efb16604627265774633322c323430")),
    ("function_ack", HELLO_CT, ACK_CT, h("600097b2")),
    ("function_return_456", ACK_CT, "a571325f7ad0f13ab91c092de28b4fe0",
     h("514497b3efff000001c8")),
    ("variable_request", CF_IV0,
     "bc99431b9a7444938f91a84bc2092bb5752857a6c6f44407ddd20a7232b01cbf",
     h("410197b288b1760b74656d7065726174757265")),
    ("variable_value", HELLO_CT, "5928fa3d00eab28515b5066d446583a8", h("614597b288fffffe7e33")),
    ("update_begin", CF_IV0, "6130c74c9c115c5b03838a9aa76cf183", h("4102abd033b175")),
    ("update_begin_ack", HELLO_CT, UPDATE_ACK_CT, h("6000abd0")),
    ("update_ready", UPDATE_ACK_CT, UPDATE_READY_CT, h("514497b333")),
    ("chunk_missed", UPDATE_READY_CT, "4ea464263e480952722c62bc9c4863c2",
     h("400197b4b163ff0000")),
    ("chunk", CF_IV0,
     "af83488cebfa6598e9b5a4acb9865e415504c41bf668f5b7fb2897169d1fde98"
     "3e2adf0d3709bb1de1c7169d0ac5eadb2af08dcb2bdc5ad65c87d4f36419ae11"
     "ec324f750dc093da7585cd00b680ba412f5d1d114609c2a0d938882f3aec60df",
     h("4102abd122b1634401234567ff") + CHUNK_TEXT),
    ("chunk_ack", HELLO_CT, CHUNK_ACK_CT, h("6000abd1")),
    ("chunk_received_ok", CHUNK_ACK_CT, "f443edbac5b4f37052cd48bdf1902420", h("514497b322")),
    ("chunk_received_bad", CHUNK_ACK_CT, "ef69a660ca6c1c89c26137b4d4a5d687", h("518097b322")),
    ("update_done", CF_IV0, "7da6d14f574c09c986a0aec226d20ab2", h("4103abd211b175")),
    ("update_done_ack", HELLO_CT, "89dc435c638e7a2e76b2f5abb9b22dae", h("6144abd211")),
    ("signal_start", CF_IV0, "0bd93111f21dd2482b78264338059bb2", h("4103abcdefb1734101")),
    ("signal_stop", CF_IV0, "c02f1e989253c612672ae010eb20cc9f", h("4103abcdefb1734100")),
    ("time_reply", CF_IV0, "b9a0a43e054fbbb3356abc0f64e9bca1", h("6145999999ff535966ad")),
    ("event_teapot", CF_IV0,
     "360bedd15a7b9bf0e544d2ce496f6bc127a7889aa872d35a8fce2a94bd4926dc",
     h("5002bbbbb1650d00") + b"teapot-boiled"),
    ("event_teapot_data", CF_IV0,
     "360bedd15a7b9bf0e544d2ce496f6bc10655fd63fb451d75c9b7daf5047e4e68",
     h("5002bbbbb1650d00") + b"teapot-boiled" + b"\xff" + b"208F"),
    ("event_private_t", CF_IV0, "064b2a7621578d73c9877ab0ff18a866", h("5002bbbcb1450174")),
    ("event_max_age_3_bytes", CF_IV0,
     "3a5f86fd82c32087c49281af80d6951bf3584907f49dd6519b9d70195b3d178f"
     "b062f53fac42e4da4da9d6e29854b020",
     h("50029d0db1650d02") + b"teacup-overflow" + h("3300003c ff") + b"11404"),
    ("event_split_path", CF_IV0,
     "c8678851926b300338b39a1fc41ec1f502c3bc38ed78c9c0a2baa986e5807a7a",
     h("50029753b165 0161 0162 0163 0164 313c ff") + b"xyz"),
    ("event_long_split_path", CF_IV0,
     "12f277718eaab2e4049edd75a3a43c8b7e464157e3af37203dbae47dade40696"
     "45c8087995934667fd111870750b74ce4c5f43e02fdca90a84dac4b8842eda5a",
     h("50029753b165 0161 0d03") + b"long-coap-option" + h("0d04") + b"another-long-path"
     + h("0162 313c ff") + b"xyz"),
    ("publish_motion", HELLO_CT,
     "7ff708e3cc6bf8fc82a20a5185f5c3c5dbe3f9edb06d088b75398de1e234140d",
     h("500297b3b1650d02") + b"motion-detected"),
    ("publish_lake_depth", HELLO_CT,
     "5af0b52602633ddffd09af73307b006c5e9f9d79a10787fdf83b7510cd9ce51c",
     h("500297b3b1450c") + b"lake-depth/1" + h("33005460 ff") + b"28m"),
    ("subscribe_device", HELLO_CT,
     "44e5009ddd401c7b66dc774f7bc6e7520816aa666c85d90d56b2d08073a0c223",
     h("400197b3b165ff") + b"53ff73065067544816300187"),
    ("subscribe_my_devices", HELLO_CT,
     "236e5d0c02f177934c49f27bbafed589af19f6dea8539634208f7615ba0cf7b5",
     h("400197b3b1650b") + b"motion/open" + h("4175")),
    ("subscribe_firehose", HELLO_CT,
     "f9e244f0329faa5ad489476c829c10021ea55ce7e31ffb8d31aa51bff3b7eb81"
     "20b8b4fa3297d24fbe23394be5e153c059748385578bac83f9db8ee1b1b2f2da"
     "9d913974fa7eed51d2c10b503577a1a7",
     h("400197b3b1650d32") + FIREHOSE_PREFIX),
    ("get_time", HELLO_CT, "493608a838fdb809a5f28656dcf81f8e", h("410197b398b174")),
    ("function_call_63", CF_IV0,
     "9457848cdf53c1c2f3590c64dfbb19b15855634d4c5f83a4c95b0a94da625858"
     "581e17ed660a3eeb12104c911bce7b5a92d0004591285a99e0ad43242846b694"
     "30806cd8f90d156ffd5eceb2fe57e8e3",
     h("4102abcdefb16604") + b"brew" + h("4d32") + ARG_63),
    ("function_call_64", CF_IV0,
     "46e5baebd531a3034259190835cfc163f0ed7f7539ff6edd6ed150a2acc03977"
     "a3067088f8ac6869cacdac7b6274af533ee2c421078c67d13e2d6a76702d5755"
     "8289d0c2b98e1ce26ee35e20c27b191d",
     h("4102abcdefb16604") + b"brew" + h("4d33") + ARG_64),
]
TRANSCRIPT = {
    name: Frame(name, iv, ct if isinstance(ct, bytes) else h(ct), pt)
    for name, iv, ct, pt in _TRANSCRIPT
}

# -- 13.4 IV-chaining check ---------------------------------------------------------

# Device send direction: Hello (iv0), then the 48-byte Describe reply (IV = Hello
# ciphertext), then a Ping whose IV is the reply's FIRST block.
CHAIN_PING = Frame(
    "ping_after_describe_reply",
    h("8c757e24f756de78d84f1980a8e0d184"),
    h("a3f8401c2f78fb9fce086fd9fa80b456"),
    h("400097b3"),
)
CHAIN_PING_WRONG_LAST_BLOCK_CT = h("cbb8668ed832ce2346b6e971381ecb43")
# Server send direction: Describe (iv0), then a VariableRequest (token 29).
CHAIN_VARIABLE_REQUEST = Frame(
    "variable_request_after_describe",
    h("4d2b016f13eededcaf7923fb7681b37a"),
    h("a0e971443b0be59807ed221d01f683c3ab6c08289ffcf42b143f3fcbaece28f6"),
    h("410197b329b1760b") + b"temperature",
)

# -- 13.5 unencrypted CoAP builders (tests/TestEvents.cpp) ----------------------------

DEVICE_ID_53FF = "53ff73065067544816300187"
EVENT_X = h("5002f649b1650178")
EVENT_FRONT_DOOR = h("5002f649b1450d0666726f6e742d646f6f722d756e6c6f636b6564")
EVENT_WEATHER = h(
    "50027654b1650d0c776561746865722f75732f6d6e2f6d696e6e6561706f6c697333000e10ff"
    "743a35462c643a2d32462c703a313525"
)
SUBSCRIBE_WEATHER_DEVICE = h(
    "40018888b1650777656174686572ff353366663733303635303637353434383136333030313837"
)
SUBSCRIBE_DEVICE_ONLY = h("40017000b165ff353366663733303635303637353434383136333030313837")
SUBSCRIBE_MOTION_MY_DEVICES = h("40011113b1650b6d6f74696f6e2f6f70656e4175")
SUBSCRIBE_MY_DEVICES_ONLY = h("40011114b1654175")
SUBSCRIBE_CHINA_FIREHOSE = h(
    "40011115b1650d0d4368696e612f5368656e5a68656e2f46755469616e4b6f75416e"
)
PRESENCE_ANNOUNCEMENT = h("50020000b168ff000102030405060708090a0b")
