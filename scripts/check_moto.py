"""Checks that the moto server under test behaves as DynamoDB does where the relay depends on it.

scripts/moto_server.py patches moto's TransactWriteItems (in-place rollback); this proves the patch
holds for the installed moto: a cancelled transaction changes no item, leaves no stream record, and
an iterator taken before it still sees the records written after it.
Usage: python check_moto.py ENDPOINT
"""

import sys
import time

import boto3

endpoint = sys.argv[1]
kw = dict(
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
)
db = boto3.client("dynamodb", **kw)
streams = boto3.client("dynamodbstreams", **kw)
table = f"check-moto-{time.time_ns()}"
db.create_table(
    TableName=table,
    KeySchema=[
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    AttributeDefinitions=[
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ],
    BillingMode="PAY_PER_REQUEST",
    StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
)
arn = db.describe_table(TableName=table)["Table"]["LatestStreamArn"]
shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
iterator = streams.get_shard_iterator(
    StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST"
)["ShardIterator"]


def key(pk, sk="1"):
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def changes(it):
    out = streams.get_records(ShardIterator=it)
    return [(r["eventName"], r["dynamodb"]["Keys"]["pk"]["S"]) for r in out["Records"]], out[
        "NextShardIterator"
    ]


db.put_item(TableName=table, Item={**key("a"), "v": {"N": "1"}})
try:
    db.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": table, "Item": key("b")}},
            {
                "Update": {
                    "TableName": table,
                    "Key": key("a"),
                    "UpdateExpression": "SET v = :n",
                    "ExpressionAttributeValues": {":n": {"N": "2"}},
                }
            },
            {
                "Put": {
                    "TableName": table,
                    "Item": key("a", "2"),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
        ]
    )
    sys.exit("check_moto: a transaction with a failing condition was not cancelled")
except db.exceptions.TransactionCanceledException:
    pass
db.put_item(TableName=table, Item=key("c"))
db.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": key("d")}}])

problems = []
seen, _ = changes(iterator)
if seen != [("INSERT", "a"), ("INSERT", "c"), ("INSERT", "d")]:
    problems.append(f"stream after a cancelled transaction: {seen}")
if "Item" in db.get_item(TableName=table, Key=key("b")):
    problems.append("a cancelled Put left its item")
if db.get_item(TableName=table, Key=key("a"))["Item"]["v"]["N"] != "1":
    problems.append("a cancelled Update left its change")
db.delete_table(TableName=table)
if problems:
    sys.exit("check_moto: " + "; ".join(problems))
print("check_moto: cancelled transactions roll back in place; the stream goes on")
