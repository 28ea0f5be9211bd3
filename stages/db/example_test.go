package db_test

import (
	"fmt"

	"github.com/stagedserver/seda/stages/db"
)

func ExampleRedact() {
	fmt.Println(db.Redact("postgres://ingest:s3cret@db.internal:5432/events?sslmode=require"))
	fmt.Println(db.Redact("host=db.internal user=ingest password='s3 cret' dbname=events"))
	// Output:
	// postgres://ingest:xxxxx@db.internal:5432/events?sslmode=require
	// host=db.internal user=ingest password=xxxxx dbname=events
}
