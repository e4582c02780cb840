"""One CONNECT by paho-mqtt (Eclipse's Python client, unchanged) over TLS, with a client
certificate and/or an OAUTH2-JWT token; prints `CONNACK 0x..` with the reason code paho read
(3.1.1 return codes as paho maps them: 4 -> 0x86, 5 -> 0x87).

Run by dataplane/tests/mqtt_auth.rs and tests/mqtt_jwt.rs (the authentication matrix).
Usage: connect_auth.py --port P --ca CA.pem [--cert C --key K] [--username U]
                       [--version v5|v3.1.1] [--jwt TOKEN]
"""

import argparse
import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--username")
    parser.add_argument("--version", default="v5")
    parser.add_argument("--jwt")
    args = parser.parse_args()

    protocol = mqtt.MQTTv5 if args.version == "v5" else mqtt.MQTTv311
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"paho-auth-{uuid.uuid4().hex[:10]}",
        protocol=protocol,
    )
    client.tls_set(ca_certs=args.ca, certfile=args.cert, keyfile=args.key)
    if args.username:
        client.username_pw_set(args.username)
    answered = threading.Event()
    result = {}

    def on_connect(_client, _userdata, _flags, reason_code, _properties):
        result["code"] = reason_code.value
        answered.set()

    client.on_connect = on_connect
    properties = None
    if args.jwt:
        properties = Properties(PacketTypes.CONNECT)
        properties.AuthenticationMethod = "OAUTH2-JWT"
        properties.AuthenticationData = args.jwt.encode()
    try:
        client.connect("localhost", args.port, keepalive=30, properties=properties)
    except Exception as error:  # a TLS refusal, for one
        print(f"CONNECT failed: {error!r}")
        return
    client.loop_start()
    answered.wait(10)
    client.disconnect()
    client.loop_stop()
    print(f"CONNACK 0x{result.get('code', 0xFF):02X}")


if __name__ == "__main__":
    main()
