import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("evaluate", "0002_shipped_suites"),
        ("jobs", "0005_job_kind_evaluate"),
    ]

    operations = [
        migrations.CreateModel(
            name="EvalOutput",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("model_name", models.CharField(max_length=64)),
                ("index", models.PositiveIntegerField()),
                ("output", models.TextField()),
                ("tokens", models.PositiveIntegerField(default=0)),
                ("error", models.CharField(blank=True, max_length=500)),
                ("scores", models.JSONField(default=dict)),
                (
                    "job",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="eval_outputs",
                        to="jobs.job",
                    ),
                ),
            ],
            options={
                "ordering": ["job", "index", "model_name"],
                "constraints": [
                    models.UniqueConstraint(fields=("job", "model_name", "index"), name="eval_output_item")
                ],
            },
        ),
    ]
