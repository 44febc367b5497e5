# dealreg: one image for the three services; the command picks the service.
#   docker build -t dealreg:0.1.0 .
#   docker run --rm -e DATABASE_URL=postgresql://... -e DEALREG_JWT_SECRET=... \
#       -p 8002:8002 dealreg:0.1.0 serve commissions --host 0.0.0.0 --port 8002
# Always set DATABASE_URL: without it a service starts an embedded PostgreSQL.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# The build sources; the packages are installed into site-packages, not run from here.
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY shared/ shared/
COPY services/ services/
COPY dealreg/ dealreg/
RUN pip install --no-cache-dir -c constraints.txt . \
    && rm -rf build ./*.egg-info

# A fixed numeric uid/gid, so that Kubernetes can check runAsNonRoot.
RUN groupadd --system --gid 10001 dealreg \
    && useradd --system --uid 10001 --gid dealreg --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin dealreg \
    && install -d -o dealreg -g dealreg /app
WORKDIR /app
USER 10001:10001

# registration 8001, commissions 8002, tiering 8003
EXPOSE 8001 8002 8003

ENTRYPOINT ["dealreg"]
CMD ["serve", "registration", "--host", "0.0.0.0"]
